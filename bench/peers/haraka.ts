// Haraka 3 from npm, installed by the harness into bench/.peers, with a generated config
// directory that expresses the relay's policy with stock plugins (see bench/README.md for
// what they cannot express).
import { existsSync } from 'node:fs';
import { copyFile, cp, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from '@sluice/relay/testing/wait-for';
import { processTree } from '../proc-stats.ts';
import { freePort, run, spawnLogged, stopChild } from '../util.ts';
import { greets, type PeerOptions, POLICY, type RunningPeer } from './peer.ts';

export const PEERS_DIR = fileURLToPath(new URL('../.peers/', import.meta.url));
const HARAKA_DIR = join(PEERS_DIR, 'node_modules', 'Haraka');
const HARAKA_BIN = join(HARAKA_DIR, 'bin', 'haraka');

/** Installs Haraka 3 into bench/.peers (git-ignored) unless it is there; returns its version. */
export async function ensureHaraka(): Promise<string> {
  if (!existsSync(HARAKA_BIN)) {
    process.stderr.write('installing Haraka@3 into bench/.peers …\n');
    await run('npm', [
      'install',
      '--prefix',
      PEERS_DIR,
      '--no-audit',
      '--no-fund',
      '--no-save',
      '--no-package-lock',
      'Haraka@3',
    ]);
  }
  const pkg = JSON.parse(await readFile(join(HARAKA_DIR, 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

// Answers Haraka's per-connection rDNS lookup as /etc/hosts does (127.0.0.1 is localhost),
// so it sends no PTR query to the machine's resolver; Postfix reads /etc/hosts, Sluice
// does no rDNS lookup.
const RDNS_PLUGIN = "exports.hook_lookup_rdns = (next) => next(OK, 'localhost')\n";

/** DH parameters made once (DSA-style, fast) and kept in bench/.peers; Haraka would spend ~15 s making its own at start. */
async function dhparams(): Promise<string> {
  const file = join(PEERS_DIR, 'dhparams.pem');
  if (!existsSync(file)) await run('openssl', ['dhparam', '-dsaparam', '-out', file, '2048']);
  return file;
}

/** Per-connection recipient budget: Haraka's limit plugin counts per connection, not per message. */
export const HARAKA_RECIPIENTS_PER_CONNECTION = 1500;

export async function startHaraka(options: PeerOptions & { senderDomain: string }): Promise<RunningPeer> {
  const home = join(options.workDir, 'haraka');
  const dir = join(home, 'config'); // haraka -c HOME reads HOME/config/
  // Haraka reads a file as a whole (no merging with its defaults): start from its own
  // config directory and change what the policy needs
  await cp(join(HARAKA_DIR, 'config'), dir, { recursive: true });
  await mkdir(join(home, 'plugins'), { recursive: true });
  await writeFile(join(home, 'plugins', 'bench_rdns.js'), RDNS_PLUGIN);
  const port = await freePort();
  const connectionIni = (await readFile(join(dir, 'connection.ini'), 'utf8')).replace(
    /^bytes=\d+$/m,
    `bytes=${POLICY.maxMessageBytes}`,
  );
  const files: Record<string, string> = {
    // public_ip set: no STUN query to find it
    'smtp.ini': `listen=127.0.0.1:${port}\npublic_ip=127.0.0.1\n`,
    'connection.ini': connectionIni,
    'log.ini': '[main]\nlevel=info\ntimestamps=true\n',
    plugins: [
      'bench_rdns',
      'tls',
      'auth/flat_file',
      'limit',
      'rcpt_to.in_host_list',
      'attachment',
      'headers',
      'queue/smtp_forward',
      '',
    ].join('\n'),
    'auth_flat_file.ini': `[core]\nmethods=PLAIN,LOGIN\nconstrain_sender=false\n\n[users]\n${options.user}=${options.password}\n`,
    // the sender's domain is "local", so authenticated users may relay anywhere and
    // unauthenticated clients may not (rcpt_to.in_host_list)
    host_list: `${options.senderDomain}\n`,
    'limit.ini': [
      '[recipients]',
      'enabled=true',
      `max=${HARAKA_RECIPIENTS_PER_CONNECTION}`,
      '[unrecognized_commands]',
      'enabled=true',
      `max=${POLICY.maxBadCommands}`,
      '[errors]',
      'enabled=true',
      `max=${POLICY.maxBadCommands}`,
      '',
    ].join('\n'),
    'attachment.ini': `disallowed_extensions=${POLICY.blockedExtensions.join(',')}\n`,
    'smtp_forward.ini': `host=127.0.0.1\nport=${options.sinkPort}\nenable_tls=false\nenable_outbound=true\n`,
    'tls.ini': '[main]\nkey=tls_key.pem\ncert=tls_cert.pem\n',
  };
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
  await copyFile(options.keyFile, join(dir, 'tls_key.pem'));
  await copyFile(options.certFile, join(dir, 'tls_cert.pem'));
  await copyFile(await dhparams(), join(dir, 'dhparams.pem'));
  const logFile = join(options.workDir, 'haraka.log');
  const child = spawnLogged(process.execPath, [HARAKA_BIN, '-c', home], logFile);
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', async (code) =>
      reject(new Error(`haraka exited (${code}): ${(await readFile(logFile, 'utf8')).slice(-2000)}`)),
    ),
  );
  exited.catch(() => {});
  await Promise.race([waitFor('haraka to listen', () => greets(port), { timeoutMs: 30_000 }), exited]);
  const pid = child.pid ?? 0;
  // bin/haraka runs haraka.js in a child process: count the tree
  return { name: 'Haraka', port, pids: () => processTree(pid), stop: () => stopChild(child, 30_000) };
}
