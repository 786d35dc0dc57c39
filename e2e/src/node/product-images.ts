// The relay and operator images for the real node, without a Docker engine. The
// Dockerfile stays the one description of what goes in: image-build.ts carries out its
// stages (context filtered by .dockerignore, npm ci --omit=dev, the COPYs, USER,
// ENTRYPOINT, CMD), and the final stage's FROM is made here from what it stands for:
//
//   node:24-bookworm-slim  =  Debian bookworm, variant minbase (mmdebstrap, from this
//                             machine's apt sources) + Node 24 at /usr/local/bin/node,
//                             the binary of the `node` npm package this repository pins
//
// Layers: the base root filesystem, Node, then the stage's files; assembled with umoci
// and imported into the node's containerd. A FROM not listed here is refused.
import { execFile } from 'node:child_process';
import { access, chmod, mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { cacheDir } from '@sluice/operator/testing/control-plane';
import { type BuiltImage, buildImage } from '../image-build.ts';
import type { NodeCluster } from './cluster.ts';
import { sh } from './host.ts';

const run = promisify(execFile);
const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const NODE_BIN = join(REPO, 'node_modules', 'node', 'bin', 'node');
const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

interface Base {
  suite: string;
  variant: string;
  /** The major version of Node the tag promises. */
  nodeMajor: number;
}

/** What each FROM of the Dockerfiles stands for. */
const BASES: Record<string, Base> = {
  'node:24-bookworm-slim': { suite: 'bookworm', variant: 'minbase', nodeMajor: 24 },
};

/**
 * The base's root filesystem from Debian packages, cached under
 * <cache>/rootfs/<suite>-<variant> (mmdebstrap takes about a minute; see e2e/README.md).
 */
export async function baseRootfs(base: Base): Promise<string> {
  const dir = join(cacheDir(), 'rootfs', `${base.suite}-${base.variant}`);
  if (
    await access(join(dir, 'etc', 'os-release')).then(
      () => true,
      () => false,
    )
  )
    return dir;
  await mkdir(dirname(dir), { recursive: true });
  const partial = await mkdtemp(`${dir}.partial-`);
  try {
    await sh('mmdebstrap', [
      '--mode=root',
      `--variant=${base.variant}`,
      '--quiet',
      base.suite,
      partial,
      '/etc/apt/sources.list.d/debian.sources',
    ]);
    // mmdebstrap leaves the target 0700; a root filesystem's / is 0755.
    await chmod(partial, 0o755);
    await rename(partial, dir);
  } catch (err: unknown) {
    await rm(partial, { recursive: true, force: true });
    throw err;
  }
  return dir;
}

export type Component = 'relay' | 'operator';

/**
 * Builds `<component>/Dockerfile` as an OCI image `ref` and imports it into the node.
 * Returns the image as the Dockerfile describes it.
 */
export async function loadProductImage(
  cluster: NodeCluster,
  component: Component,
  ref: string,
): Promise<BuiltImage> {
  const into = await mkdtemp(join(cluster.dir, `image-${component}-`));
  try {
    const { stdout: nodeVersion } = await run(NODE_BIN, ['--version']);
    const image = await buildImage({
      context: REPO,
      dockerfile: join(REPO, component, 'Dockerfile'),
      into,
      env: {
        ...process.env,
        PATH: `${dirname(NODE_BIN)}:${process.env.PATH ?? PATH}`,
        npm_config_audit: 'false',
      },
    });
    const base = BASES[image.from];
    if (!base)
      throw new Error(`${component}/Dockerfile: FROM ${image.from} is not one the node tier can make`);
    if (!nodeVersion.startsWith(`v${base.nodeMajor}.`))
      throw new Error(
        `FROM ${image.from} needs Node ${base.nodeMajor}; ${NODE_BIN} is ${nodeVersion.trim()}`,
      );
    await cluster.loadImage({
      ref,
      layers: [
        { source: await baseRootfs(base), target: '/' },
        { source: NODE_BIN, target: '/usr/local/bin/node' },
        { source: image.root, target: '/' },
      ],
      entrypoint: image.entrypoint,
      cmd: image.cmd,
      ...(image.user ? { user: `${image.user.uid}:${image.user.gid}` } : {}),
      workdir: image.workdir,
      env: { PATH, ...image.env },
    });
    return image;
  } finally {
    await rm(into, { recursive: true, force: true });
  }
}
