// How kubelet writes a ConfigMap or Secret volume (pkg/volume/util/atomic_writer.go), so
// that the relay sees exactly what it would see in a pod:
//
//   <dir>/..2026_01_02_15_04_05.123456789/<files>   this version's files
//   <dir>/..data -> ..2026_01_02_15_04_05.123456789  the current version
//   <dir>/<key>  -> ..data/<key>                      what the container reads
//
// An update writes a new timestamped directory, points a `..data_tmp` symlink at it and
// renames that over `..data` (one atomic step), then fixes the visible symlinks and
// removes the old version. A reader never sees half of an update, and a watch on a
// file's own inode never fires again afterwards: watch the directory.
import { randomBytes } from 'node:crypto';
import {
  lstat,
  mkdir,
  readdir,
  readFile,
  readlink,
  rename,
  rm,
  symlink,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { dirname, join } from 'node:path';

const DATA = '..data';
const DATA_TMP = '..data_tmp';

/** Relative path → file content. */
export type VolumePayload = ReadonlyMap<string, Buffer>;

/** Rejects what kubelet rejects: absolute paths, `..` components, names starting with `..`. */
function checkPath(path: string): void {
  const parts = path.split('/');
  if (path.startsWith('/') || parts.some((p) => p === '' || p === '..' || p.startsWith('..'))) {
    throw new Error(`invalid volume file path ${JSON.stringify(path)}`);
  }
}

function timestampedName(now: Date): string {
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  const stamp = `${now.getUTCFullYear()}_${pad(now.getUTCMonth() + 1)}_${pad(now.getUTCDate())}_${pad(now.getUTCHours())}_${pad(now.getUTCMinutes())}_${pad(now.getUTCSeconds())}`;
  return `..${stamp}.${randomBytes(5).toString('hex')}`;
}

async function currentVersion(dir: string): Promise<string | undefined> {
  try {
    return await readlink(join(dir, DATA));
  } catch (err: unknown) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function readTree(root: string, prefix = ''): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const entry of await readdir(join(root, prefix), { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) for (const [k, v] of await readTree(root, rel)) out.set(k, v);
    else out.set(rel, await readFile(join(root, rel)));
  }
  return out;
}

function samePayload(a: VolumePayload, b: VolumePayload): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) {
    const other = b.get(k);
    if (!other?.equals(v)) return false;
  }
  return true;
}

/** The first path component of each file: what gets a visible symlink in `dir`. */
function visibleNames(payload: VolumePayload): Set<string> {
  return new Set([...payload.keys()].map((p) => p.split('/')[0] as string));
}

/**
 * Makes `dir` hold exactly `payload`, kubelet's way. Returns false (and touches nothing)
 * when it already does.
 */
export async function writeVolume(dir: string, payload: VolumePayload, now = new Date()): Promise<boolean> {
  for (const path of payload.keys()) checkPath(path);
  await mkdir(dir, { recursive: true });
  const old = await currentVersion(dir);
  const oldPayload = old ? await readTree(join(dir, old)) : new Map<string, Buffer>();
  if (old && samePayload(oldPayload, payload)) return false;

  const version = timestampedName(now);
  for (const [path, content] of payload) {
    const file = join(dir, version, path);
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, content, { mode: 0o644 });
  }
  await mkdir(join(dir, version), { recursive: true });
  await rm(join(dir, DATA_TMP), { force: true });
  await symlink(version, join(dir, DATA_TMP));
  await rename(join(dir, DATA_TMP), join(dir, DATA));

  const visible = visibleNames(payload);
  for (const name of visible) {
    const exists = await lstat(join(dir, name)).then(
      () => true,
      () => false,
    );
    if (!exists) await symlink(join(DATA, name), join(dir, name));
  }
  for (const name of visibleNames(oldPayload)) {
    if (!visible.has(name)) await unlink(join(dir, name)).catch(() => undefined);
  }
  if (old) await rm(join(dir, old), { recursive: true, force: true });
  return true;
}
