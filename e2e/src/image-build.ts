// The images' file systems without Docker (there is no Docker engine here): the
// Dockerfile's steps carried out in a directory per stage, so that a test can run the
// image's entrypoint on what the image would hold. Read from the Dockerfile itself:
// FROM (stages), WORKDIR, ENV, COPY (from the build context, filtered by .dockerignore,
// or --from an earlier stage, symlinks kept), RUN (sh -c in the stage's directory, with
// this machine's Node 24 and npm), USER, ENTRYPOINT and CMD. The base image's own files
// are not there: the entrypoint runs on this machine's Node 24, which the base image
// (node:24) provides. Anything else in a Dockerfile is refused, so that a change to the
// Dockerfiles that this cannot carry out fails loudly instead of being skipped.
import { execFile } from 'node:child_process';
import { cp, lstat, mkdir, readdir, readFile } from 'node:fs/promises';
import { basename, dirname, join, posix, relative } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface BuiltImage {
  /** The final stage's base image (its FROM), which `root` is laid over. */
  from: string;
  /** The final stage's root directory. */
  root: string;
  workdir: string;
  env: Record<string, string>;
  /** From USER: numeric uid and gid, when given. */
  user?: { uid: number; gid: number };
  entrypoint: string[];
  cmd: string[];
}

/** A stage as it is carried out; the last one is the image. */
type Stage = BuiltImage & { name?: string };

/** Lines of a Dockerfile with comments dropped and backslash continuations joined. */
function instructions(text: string): string[] {
  const out: string[] = [];
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trimEnd();
    if (current === '' && (line.trim() === '' || line.trimStart().startsWith('#'))) continue;
    if (line.endsWith('\\')) {
      current += `${line.slice(0, -1)} `;
      continue;
    }
    out.push((current + line).trim());
    current = '';
  }
  return out;
}

/** .dockerignore patterns as a predicate on context-relative paths (a directory excludes its contents). */
async function ignoredBy(context: string): Promise<(path: string) => boolean> {
  const text = await readFile(join(context, '.dockerignore'), 'utf8').catch(() => '');
  const patterns = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  const exception = patterns.find((p) => p.startsWith('!'));
  if (exception) throw new Error(`.dockerignore exceptions are not supported here: ${exception}`);
  const regexes = patterns.map((p) => {
    const glob = posix.normalize(p).replace(/^\//, '');
    let source = '';
    for (let i = 0; i < glob.length; i++) {
      const ch = glob[i] as string;
      if (glob.startsWith('**/', i)) {
        source += '(?:.*/)?';
        i += 2;
      } else if (glob.startsWith('**', i)) {
        source += '.*';
        i += 1;
      } else if (ch === '*') source += '[^/]*';
      else if (ch === '?') source += '[^/]';
      else source += ch.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    }
    return new RegExp(`^${source}$`);
  });
  return (path: string) => {
    const parts = path.split('/');
    for (let n = 1; n <= parts.length; n++) {
      const prefix = parts.slice(0, n).join('/');
      if (regexes.some((r) => r.test(prefix))) return true;
    }
    return false;
  };
}

/** Copies src (file or directory contents) to dest, leaving out what the filter refuses. */
async function copyInto(
  src: string,
  dest: string,
  keep: (from: string) => boolean,
  intoDirectory: boolean,
): Promise<void> {
  const stat = await lstat(src);
  if (stat.isDirectory()) {
    await mkdir(dest, { recursive: true });
    for (const name of await readdir(src)) {
      const from = join(src, name);
      if (!keep(from)) continue;
      await copyInto(from, join(dest, name), keep, false);
    }
    return;
  }
  const target = intoDirectory ? join(dest, basename(src)) : dest;
  await mkdir(dirname(target), { recursive: true });
  await cp(src, target, { verbatimSymlinks: true, preserveTimestamps: true });
}

function jsonArray(instruction: string, rest: string): string[] {
  const value: unknown = JSON.parse(rest);
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) {
    throw new Error(`${instruction} must be a JSON array of strings here: ${rest}`);
  }
  return value;
}

/**
 * Carries out the Dockerfile into `into` (one directory per stage) and describes the final
 * stage. `env` is added to every RUN (PATH with Node 24 and npm).
 */
export async function buildImage(options: {
  context: string;
  dockerfile: string;
  into: string;
  env: NodeJS.ProcessEnv;
}): Promise<BuiltImage> {
  const ignored = await ignoredBy(options.context);
  const stages: Stage[] = [];
  let stage: Stage | undefined;
  for (const line of instructions(await readFile(options.dockerfile, 'utf8'))) {
    const [instruction = '', ...words] = line.split(/\s+/);
    const rest = line.slice(instruction.length).trim();
    switch (instruction.toUpperCase()) {
      case 'FROM': {
        const root = join(options.into, `stage-${stages.length}`);
        await mkdir(root, { recursive: true });
        const as = words.findIndex((w) => w.toUpperCase() === 'AS');
        if (words[0] === undefined) throw new Error(`FROM needs an image: ${line}`);
        stage = { from: words[0], root, workdir: '/', env: {}, entrypoint: [], cmd: [] };
        if (as >= 0 && words[as + 1]) stage.name = words[as + 1];
        stages.push(stage);
        break;
      }
      case 'WORKDIR':
        if (!stage) throw new Error('WORKDIR before FROM');
        stage.workdir = posix.resolve(stage.workdir, rest);
        await mkdir(join(stage.root, stage.workdir), { recursive: true });
        break;
      case 'ENV': {
        if (!stage) throw new Error('ENV before FROM');
        for (const pair of words) {
          const eq = pair.indexOf('=');
          if (eq < 1) throw new Error(`ENV takes KEY=value pairs here: ${line}`);
          stage.env[pair.slice(0, eq)] = pair.slice(eq + 1);
        }
        break;
      }
      case 'COPY': {
        if (!stage) throw new Error('COPY before FROM');
        const current: Stage = stage;
        const flags = words.filter((w) => w.startsWith('--'));
        const paths = words.filter((w) => !w.startsWith('--'));
        const dest = paths.pop();
        if (dest === undefined || paths.length === 0)
          throw new Error(`COPY needs a source and a destination: ${line}`);
        const fromFlag = flags.find((f) => f.startsWith('--from='));
        const other = flags.filter((f) => f !== fromFlag);
        if (other.length > 0) throw new Error(`COPY flags not supported here: ${other.join(' ')}`);
        const source = fromFlag ? stages.find((s) => s.name === fromFlag.slice('--from='.length)) : undefined;
        if (fromFlag && !source) throw new Error(`COPY ${fromFlag}: no such stage`);
        const destPath = join(current.root, posix.resolve(current.workdir, dest));
        const intoDirectory = dest.endsWith('/') || paths.length > 1;
        for (const path of paths) {
          const from = source
            ? join(source.root, posix.resolve(source.workdir, path))
            : join(options.context, path);
          const keep = (p: string) => source !== undefined || !ignored(relative(options.context, p));
          if (!keep(from)) throw new Error(`COPY ${path}: excluded by .dockerignore`);
          await copyInto(from, destPath, keep, intoDirectory);
        }
        break;
      }
      case 'RUN':
        if (!stage) throw new Error('RUN before FROM');
        if (rest.startsWith('[')) throw new Error(`RUN in exec form is not supported here: ${line}`);
        await run('sh', ['-c', rest], {
          cwd: join(stage.root, stage.workdir),
          env: { ...options.env, ...stage.env },
          maxBuffer: 64 * 1024 * 1024,
        });
        break;
      case 'USER': {
        if (!stage) throw new Error('USER before FROM');
        const match = /^(\d+)(?::(\d+))?$/.exec(rest);
        if (!match) throw new Error(`USER must be numeric uid[:gid] here: ${rest}`);
        stage.user = { uid: Number(match[1]), gid: Number(match[2] ?? match[1]) };
        break;
      }
      case 'ENTRYPOINT':
        if (!stage) throw new Error('ENTRYPOINT before FROM');
        stage.entrypoint = jsonArray('ENTRYPOINT', rest);
        break;
      case 'CMD':
        if (!stage) throw new Error('CMD before FROM');
        stage.cmd = jsonArray('CMD', rest);
        break;
      case 'EXPOSE':
        break;
      default:
        throw new Error(`Dockerfile instruction not supported here: ${instruction}`);
    }
  }
  if (!stage) throw new Error(`${options.dockerfile} has no FROM`);
  const { name: _name, ...image } = stage;
  return image;
}
