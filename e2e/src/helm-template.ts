// `helm template` and `helm lint` with the real helm (built from its Go module), for tests
// that read what the chart renders. Helm's cache, config and data live in a temporary
// directory, so a run leaves nothing in $HOME.
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { binaryPaths } from '@sluice/operator/testing/control-plane';
import { parseAllDocuments } from 'yaml';

const execFileAsync = promisify(execFile);
export const CHART = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'charts', 'sluice');

/** A rendered Kubernetes object, loosely typed: tests read what they assert on. */
export interface Rendered {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  // biome-ignore lint/suspicious/noExplicitAny: rendered manifests of every kind
  [field: string]: any;
}

let home: string | undefined;

/** Runs helm; rejects with its stderr in the message. */
export async function runHelm(args: readonly string[]): Promise<string> {
  home ??= mkdtempSync(join(tmpdir(), 'sluice-helm-'));
  try {
    const { stdout } = await execFileAsync(binaryPaths().helm, [...args], {
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: home,
        HELM_CACHE_HOME: join(home, 'cache'),
        HELM_CONFIG_HOME: join(home, 'config'),
        HELM_DATA_HOME: join(home, 'data'),
      },
      maxBuffer: 16 * 1024 * 1024,
    });
    return stdout;
  } catch (err: unknown) {
    const e = err as Error & { stderr?: string };
    throw new Error(`helm ${args.join(' ')}: ${e.stderr ?? e.message}`, { cause: err });
  }
}

/** The objects `helm template <release> charts/sluice` renders with these extra arguments. */
export async function renderChart(
  args: readonly string[] = [],
  release = 'mail',
  namespace = 'sluice-system',
): Promise<Rendered[]> {
  const stdout = await runHelm(['template', release, CHART, '--namespace', namespace, ...args]);
  return parseAllDocuments(stdout)
    .map((d) => d.toJS() as Rendered | null)
    .filter((d): d is Rendered => d !== null);
}

/** The one object of a kind (and name, when given); throws naming what is missing. */
export function findObject(docs: readonly Rendered[], kind: string, name?: string): Rendered {
  const found = docs.find((d) => d.kind === kind && (name === undefined || d.metadata.name === name));
  if (!found)
    throw new Error(
      `no ${kind}${name ? ` ${name}` : ''} among ${docs.map((d) => `${d.kind}/${d.metadata.name}`).join(', ')}`,
    );
  return found;
}

/** The operator container's environment, name to value (valueFrom entries as undefined). */
export function operatorEnv(docs: readonly Rendered[]): Record<string, string | undefined> {
  const env = (findObject(docs, 'Deployment').spec.template.spec.containers[0].env ?? []) as Array<{
    name: string;
    value?: string;
  }>;
  return Object.fromEntries(env.map((e) => [e.name, e.value]));
}

/** Whether a label selector's matchLabels select these labels. */
export function selects(
  matchLabels: Record<string, string>,
  labels: Record<string, string> | undefined,
): boolean {
  return Object.entries(matchLabels).every(([k, v]) => labels?.[k] === v);
}
