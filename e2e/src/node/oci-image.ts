// OCI images without a Docker engine: umoci (Debian) writes an OCI layout from files on
// this machine, and `ctr images import` loads its tar into containerd's k8s.io
// namespace, where the kubelet finds it (pods use imagePullPolicy: Never or
// IfNotPresent: nothing is ever pulled).
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { sh } from './host.ts';

export interface ImageSpec {
  /** The image reference, e.g. registry.k8s.io/pause:3.10.2 (a tag is required). */
  ref: string;
  /** Layers, in order: a file or directory on this machine and where it goes in the image. */
  layers: { source: string; target: string }[];
  entrypoint: string[];
  cmd?: string[];
  /** "uid:gid" */
  user?: string;
  workdir?: string;
  env?: Record<string, string>;
}

/** Writes the image as an OCI layout tar (in `workDir`) and returns its path. */
export async function buildOciImage(spec: ImageSpec, workDir: string): Promise<string> {
  const tag = spec.ref.slice(spec.ref.lastIndexOf(':') + 1);
  if (tag === '' || tag.includes('/')) throw new Error(`image ${spec.ref} needs a tag`);
  const dir = await mkdtemp(join(workDir, 'oci-'));
  const layout = join(dir, 'layout');
  const image = `${layout}:${tag}`;
  await sh('umoci', ['init', '--layout', layout]);
  await sh('umoci', ['new', '--image', image]);
  for (const layer of spec.layers) {
    await sh('umoci', ['insert', '--image', image, '--no-history', layer.source, layer.target]);
  }
  const config = ['config', '--image', image, '--no-history', '--os', 'linux', '--architecture', 'amd64'];
  for (const arg of spec.entrypoint) config.push('--config.entrypoint', arg);
  for (const arg of spec.cmd ?? []) config.push('--config.cmd', arg);
  if (spec.user) config.push('--config.user', spec.user);
  if (spec.workdir) config.push('--config.workingdir', spec.workdir);
  for (const [k, v] of Object.entries(spec.env ?? {})) config.push('--config.env', `${k}=${v}`);
  await sh('umoci', config);
  await sh('umoci', ['gc', '--layout', layout]);
  const tar = join(dir, 'image.tar');
  await sh('tar', ['-C', layout, '-cf', tar, '.']);
  await rm(layout, { recursive: true, force: true });
  return tar;
}

/** Imports an OCI layout tar into containerd (namespace k8s.io) as `ref`, unpacked for overlayfs. */
export async function importImage(ctr: string, address: string, tar: string, ref: string): Promise<void> {
  const base = ref.slice(0, ref.lastIndexOf(':'));
  await sh(ctr, ['--address', address, '-n', 'k8s.io', 'images', 'import', '--base-name', base, tar]);
  const listed = await sh(ctr, ['--address', address, '-n', 'k8s.io', 'images', 'ls', '-q']);
  if (!listed.split('\n').includes(ref))
    throw new Error(`ctr images import of ${tar} did not create ${ref}; images:\n${listed}`);
}
