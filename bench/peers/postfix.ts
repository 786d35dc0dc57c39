// Postfix from Debian as a private instance: its own config directory, queue and data
// directories under the run's temp dir, smtpd on a loopback port, relayhost = the sink,
// Cyrus SASL (sasldb) for AUTH PLAIN. Installed by the harness when missing.
import { existsSync, readFileSync } from 'node:fs';
import { chmod, chown, copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { waitFor } from '@sluice/relay/testing/wait-for';
import { processTree } from '../proc-stats.ts';
import { freePort, run } from '../util.ts';
import { DNSBL_ZONE, greets, type PeerOptions, POLICY, type RunningPeer } from './peer.ts';

const SASL_REALM = 'bench.realm';

/** Installs postfix and Cyrus SASL from Debian when missing (no system instance is configured). */
export async function ensurePostfix(): Promise<string> {
  if (!existsSync('/usr/sbin/postfix') || !existsSync('/usr/sbin/saslpasswd2')) {
    process.stderr.write('installing postfix, sasl2-bin, libsasl2-modules from Debian …\n');
    await run('sh', [
      '-c',
      'echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections',
    ]);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    await run('apt-get', ['update', '-qq'], { env });
    await run('apt-get', ['install', '-y', '-q', 'postfix', 'sasl2-bin', 'libsasl2-modules'], { env });
  }
  // 'No configuration' starts no system instance; stop one in case the machine had it
  if (existsSync('/etc/postfix/main.cf')) await run('postfix', ['stop']).catch(() => '');
  return (await run('postconf', ['-d', '-h', 'mail_version'])).trim();
}

/** `tuning`: main.cf settings over the harness's own (a variant of the same policy). */
export async function startPostfix(
  options: PeerOptions,
  tuning: Record<string, string> = {},
): Promise<RunningPeer> {
  const etc = join(options.workDir, 'etc');
  const queue = join(options.workDir, 'queue');
  const data = join(options.workDir, 'data');
  const sasl = join(etc, 'sasl'); // Debian's smtpd reads <config_directory>/sasl/smtpd.conf
  for (const d of [etc, queue, data, sasl]) await mkdir(d, { recursive: true });
  // the postfix user must reach its data directory: open the work directory and its parent
  await chmod(options.workDir, 0o755);
  await chmod(dirname(options.workDir), 0o755);
  const postfix = account('postfix');
  await chown(data, postfix.uid, postfix.gid);
  const port = await freePort();
  const ext = POLICY.blockedExtensions.join('|');
  await writeFile(
    join(etc, 'attachment_checks'),
    // mime_header_checks sees each MIME header; names are not RFC 2047/2231 decoded
    `/^Content-(Disposition|Type):.*name[*0-9]*[[:space:]]*=[[:space:]]*"?[^;"]*\\.(${ext})[. ]*"?[[:space:]]*(;|$)/ REJECT 5.7.1 Attachment type not allowed\n`,
  );
  const main = {
    compatibility_level: '3.6',
    queue_directory: queue,
    data_directory: data,
    mail_owner: 'postfix',
    setgid_group: 'postdrop',
    myhostname: 'postfix.bench',
    mydomain: 'bench',
    myorigin: '$myhostname',
    mydestination: '',
    local_recipient_maps: '',
    alias_maps: '',
    alias_database: '',
    inet_interfaces: '127.0.0.1',
    inet_protocols: 'ipv4',
    relayhost: `[127.0.0.1]:${options.sinkPort}`,
    smtp_tls_security_level: 'none',
    smtpd_recipient_limit: String(POLICY.maxRecipients),
    message_size_limit: String(POLICY.maxMessageBytes),
    smtpd_hard_error_limit: String(POLICY.maxBadCommands),
    smtpd_relay_restrictions: 'permit_sasl_authenticated, reject_unauth_destination',
    smtpd_recipient_restrictions: '',
    smtpd_sasl_auth_enable: 'yes',
    smtpd_sasl_type: 'cyrus',
    smtpd_sasl_path: 'smtpd',
    cyrus_sasl_config_path: sasl,
    smtpd_sasl_local_domain: SASL_REALM,
    smtpd_sasl_security_options: 'noanonymous',
    smtpd_tls_security_level: 'may',
    smtpd_tls_auth_only: 'no',
    smtpd_tls_cert_file: options.certFile,
    smtpd_tls_key_file: options.keyFile,
    mime_header_checks: `regexp:${join(etc, 'attachment_checks')}`,
    ...(options.dnsblNameserver === undefined
      ? {}
      : { smtpd_client_restrictions: `reject_rbl_client ${DNSBL_ZONE}=127.0.0.[2..255]` }),
    maillog_file: join(options.workDir, 'maillog'),
    maillog_file_prefixes: options.workDir,
    smtpd_client_connection_count_limit: '1000',
    default_process_limit: '200',
    biff: 'no',
    append_dot_mydomain: 'no',
    ...tuning,
  };
  await writeFile(
    join(etc, 'main.cf'),
    `${Object.entries(main)
      .map(([k, v]) => `${k} = ${v}`)
      .join('\n')}\n`,
  );
  // chroot off, except for smtpd when it checks the DNSBL (see jailSmtpd)
  const jailed = options.dnsblNameserver !== undefined;
  const services = [
    `127.0.0.1:${port} inet n - ${jailed ? 'y' : 'n'} - - smtpd`,
    'pickup unix n - n 60 1 pickup',
    'cleanup unix n - n - 0 cleanup',
    'qmgr unix n - n 300 1 qmgr',
    'tlsmgr unix - - n 1000? 1 tlsmgr',
    'rewrite unix - - n - - trivial-rewrite',
    'bounce unix - - n - 0 bounce',
    'defer unix - - n - 0 bounce',
    'trace unix - - n - 0 bounce',
    'verify unix - - n - 1 verify',
    'flush unix n - n 1000? 0 flush',
    'proxymap unix - - n - - proxymap',
    'proxywrite unix - - n - 1 proxymap',
    'smtp unix - - n - - smtp',
    'relay unix - - n - - smtp',
    'showq unix n - n - - showq',
    'error unix - - n - - error',
    'retry unix - - n - - error',
    'discard unix - - n - - discard',
    'local unix - n n - - local',
    'anvil unix - - n - 1 anvil',
    'scache unix - - n - 1 scache',
    'postlog unix-dgram n - n - 1 postlogd',
  ];
  await writeFile(join(etc, 'master.cf'), `${services.join('\n')}\n`);
  await writeFile(
    join(sasl, 'smtpd.conf'),
    `pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\nsasldb_path: ${join(sasl, 'sasldb2')}\n`,
  );
  await run('saslpasswd2', ['-p', '-c', '-f', join(sasl, 'sasldb2'), '-u', SASL_REALM, options.user], {
    input: options.password,
  });
  await readableBy(postfix, join(sasl, 'sasldb2'));
  if (options.dnsblNameserver !== undefined) await jailSmtpd(queue, sasl, options.dnsblNameserver, postfix);
  await run('postfix', ['-c', etc, 'start']).catch(async (err: unknown) => {
    // postfix reports to syslog, absent here; under a terminal it says why on stderr
    const why = await run('script', ['-qc', `postfix -c ${etc} check`, '/dev/null']).catch((e: unknown) =>
      String(e),
    );
    throw new Error(`postfix did not start: ${why.trim()}`, { cause: err });
  });
  await waitFor('postfix to listen', () => greets(port), { timeoutMs: 30_000 });
  const masterPid = Number((await readFile(join(queue, 'pid', 'master.pid'), 'utf8')).trim());
  return {
    name: 'Postfix',
    port,
    pids: () => processTree(masterPid),
    stop: async () => {
      await run('postfix', ['-c', etc, 'stop']).catch(() => '');
      await waitFor('postfix to stop', () => !existsSync(`/proc/${masterPid}`), { timeoutMs: 30_000 }).catch(
        () => process.kill(masterPid, 'SIGKILL'),
      );
    },
  };
}

/**
 * `reject_rbl_client` asks the system resolver, which reads /etc/resolv.conf and speaks to
 * port 53 only. A chrooted smtpd reads the jail's etc/resolv.conf instead (Debian's own
 * Postfix runs chrooted the same way), so the jail, which is the queue directory, gets one
 * naming the harness's DNS server, and the few files name lookups need besides. Cyrus SASL
 * reads its configuration before the chroot but opens sasldb inside it, at the same path.
 */
async function jailSmtpd(
  queue: string,
  sasl: string,
  nameserver: string,
  postfix: { uid: number; gid: number },
): Promise<void> {
  const jailEtc = join(queue, 'etc');
  await mkdir(jailEtc, { recursive: true });
  await writeFile(join(jailEtc, 'resolv.conf'), `nameserver ${nameserver}\noptions timeout:2 attempts:2\n`);
  await writeFile(join(jailEtc, 'nsswitch.conf'), 'hosts: files dns\n');
  for (const file of ['hosts', 'services', 'host.conf', 'localtime']) {
    if (existsSync(join('/etc', file))) await copyFile(join('/etc', file), join(jailEtc, file));
  }
  const jailSasl = join(queue, sasl);
  await mkdir(jailSasl, { recursive: true });
  await copyFile(join(sasl, 'sasldb2'), join(jailSasl, 'sasldb2'));
  await readableBy(postfix, join(jailSasl, 'sasldb2'));
}

/** A secret file the postfix user reads (sasldb): owned by it, closed to others. */
async function readableBy(owner: { uid: number; gid: number }, path: string): Promise<void> {
  await chown(path, owner.uid, owner.gid);
  await chmod(path, 0o640);
}

/** uid and gid of a system user, from /etc/passwd (name:x:uid:gid:…). */
function account(name: string): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${name}:`));
  const fields = line?.split(':') ?? [];
  if (fields.length < 4) throw new Error(`no user ${name}`);
  return { uid: Number(fields[2]), gid: Number(fields[3]) };
}
