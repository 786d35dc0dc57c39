// The real helm (built from its Go module, like the control plane) against the test API
// server. Its cache, config and data directories live in the test's directory, so a
// run leaves nothing in $HOME.
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { binaryPaths } from '@sluice/operator/testing/control-plane';

export interface HelmOptions {
  kubeconfig: string;
  /** Where helm keeps its cache, config and data. */
  dir: string;
}

/** Runs helm with the arguments; rejects with helm's stderr when it fails. */
export async function helm(args: readonly string[], options: HelmOptions): Promise<string> {
  const home = join(options.dir, 'helm');
  await mkdir(home, { recursive: true });
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: home,
    HELM_CACHE_HOME: join(home, 'cache'),
    HELM_CONFIG_HOME: join(home, 'config'),
    HELM_DATA_HOME: join(home, 'data'),
    KUBECONFIG: options.kubeconfig,
  };
  return new Promise((resolve, reject) => {
    execFile(binaryPaths().helm, [...args], { env, timeout: 120_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`helm ${args.join(' ')}: ${err.message}\n${stderr}`, { cause: err }));
      else resolve(stdout);
    });
  });
}
