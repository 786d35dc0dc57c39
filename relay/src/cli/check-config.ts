// `sluice-relay check-config FILE`: the validation a reload runs (the config file, then the
// users file it names, hashes and their parameters included), without starting anything.
// Exit 0 when both would be applied; 1 with one line per problem (file, entry, problem).
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { loadRelayConfig, loadUsersFile, parseConfigText } from '../config/load.ts';
import type { RelayConfig, UsersFile } from '../config/schema.ts';
import { ConfigError } from '../config/validate.ts';
import { loadDkimKeys } from '../dkim/keys.ts';
import { isSluiceError } from '../errors.ts';

export type CheckConfigIo = { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream };

export const CHECK_CONFIG_USAGE = `Usage: sluice-relay check-config FILE

Validates a relay config file and the users file it names, as a reload would,
and prints one line per problem. Exits 0 when both are valid, 1 when not.
`;

const EXIT_OK = 0;
const EXIT_INVALID = 1;
const EXIT_USAGE = 2;

/** Runs the command; resolves to the process exit code. */
export async function runCheckConfig(args: readonly string[], io: CheckConfigIo): Promise<number> {
  const [path, ...extra] = args;
  if (path === '--help' || path === '-h') {
    io.stdout.write(CHECK_CONFIG_USAGE);
    return EXIT_OK;
  }
  if (path === undefined || extra.length > 0) {
    io.stderr.write(CHECK_CONFIG_USAGE);
    return EXIT_USAGE;
  }
  const problems: string[] = [];
  let config: RelayConfig | undefined;
  let users: UsersFile | undefined;
  try {
    config = await loadRelayConfig(path);
  } catch (err: unknown) {
    problems.push(...problemLines(err, path));
  }
  // the DKIM keys are read and checked as a reload reads them
  if (config) {
    try {
      await loadDkimKeys(config.dkim, path);
    } catch (err: unknown) {
      problems.push(...problemLines(err, path));
    }
  }
  // An invalid config still names its users file; that file is checked too, so one run
  // shows every problem.
  const usersPath = config?.usersFile ?? (await usersFileOf(path));
  if (usersPath !== undefined) {
    try {
      users = await loadUsersFile(usersPath);
    } catch (err: unknown) {
      problems.push(...problemLines(err, usersPath));
    }
  }
  if (problems.length > 0 || config === undefined || users === undefined) {
    io.stderr.write(`${problems.join('\n')}\n`);
    io.stderr.write(
      `check-config: ${problems.length} problem${problems.length === 1 ? '' : 's'}; not valid\n`,
    );
    return EXIT_INVALID;
  }
  io.stdout.write(
    `${path}: ok (${config.listeners.length} listeners); ${usersPath}: ok (${users.users.length} users)\n`,
  );
  return EXIT_OK;
}

function problemLines(err: unknown, path: string): readonly string[] {
  if (err instanceof ConfigError) return err.problems;
  if (isSluiceError(err)) return [`${path}: ${err.message}`];
  throw err;
}

/** The usersFile named by a config file that did not validate, when it names one. */
async function usersFileOf(path: string): Promise<string | undefined> {
  try {
    const raw = parseConfigText(await readFile(path, 'utf8'), path);
    const named =
      raw !== null && typeof raw === 'object' ? (raw as { usersFile?: unknown }).usersFile : undefined;
    return typeof named === 'string' && named !== '' ? resolve(dirname(path), named) : undefined;
  } catch {
    return undefined;
  }
}
