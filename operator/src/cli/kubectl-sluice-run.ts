// `kubectl sluice queue ...`: the relay's queue command (list, show, flush, retry, hold,
// release, delete) across every relay pod of a RelayPolicy, as `postqueue -p` and
// `postsuper` act on a whole Postfix host. The pods and the admin token are found through
// the Kubernetes API (queue-targets.ts); listings are merged with the pod on each
// message, counts are summed.
import type { KubeConfig } from '@kubernetes/client-node';
import { queueUsage, runQueueCli } from '@sluice/relay/queue-cli';
import { KubeClient } from '../kube/client.ts';
import { policyTargets, TargetsError } from './queue-targets.ts';

export const KUBECTL_SLUICE_USAGE = `Usage: kubectl sluice queue <command> --policy NAME [-n NAMESPACE] [--direct]
                            [--kubeconfig PATH] [command options]

Runs the queue command on every relay pod of a RelayPolicy: the pods are found by
the policy's labels, the admin token is read from the Secret <policy>-relay-internal,
and each pod's admin API is reached through the API server's pod proxy (--direct:
at the pod IP, from inside the cluster network).

Options:
  --policy NAME       the RelayPolicy
  -n, --namespace NS  its namespace (default: the kubeconfig context's, else default)
  --direct            connect to the pod IPs instead of the API server's pod proxy
  --kubeconfig PATH   the kubeconfig (default: $KUBECONFIG, ~/.kube/config, in-cluster)

${queueUsage('kubectl sluice queue')}`;

export interface KubectlSluiceIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** The kubeconfig: the file given, else the default lookup. */
  kubeConfig: (path: string | undefined) => KubeConfig;
}

function write(stream: NodeJS.WritableStream, text: string): Promise<void> {
  return new Promise((resolve, reject) => stream.write(text, (err) => (err ? reject(err) : resolve())));
}

async function usageError(io: KubectlSluiceIo, message: string): Promise<number> {
  await write(io.stderr, `kubectl sluice: ${message}\n\n${KUBECTL_SLUICE_USAGE}`);
  return 2;
}

/** Runs the plugin; resolves to the exit code (0 ok, 1 error, 2 usage). */
export async function runKubectlSluice(args: string[], io: KubectlSluiceIo): Promise<number> {
  const [command, ...rest] = args;
  if (command === '-h' || command === '--help' || command === 'help') {
    await write(io.stdout, KUBECTL_SLUICE_USAGE);
    return 0;
  }
  if (command !== 'queue')
    return usageError(io, command === undefined ? 'no command given' : `unknown command "${command}"`);
  // our options out, the queue command's left as they are
  const own: { policy?: string; namespace?: string; kubeconfig?: string; direct: boolean } = {
    direct: false,
  };
  const passed: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i] as string;
    const [flag, inline] =
      arg.startsWith('--') && arg.includes('=')
        ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)]
        : [arg, undefined];
    const key = {
      '--policy': 'policy',
      '-n': 'namespace',
      '--namespace': 'namespace',
      '--kubeconfig': 'kubeconfig',
    }[flag] as 'policy' | 'namespace' | 'kubeconfig' | undefined;
    if (flag === '--direct') own.direct = true;
    else if (key !== undefined) {
      const value = inline ?? rest[++i];
      if (value === undefined || value === '') return usageError(io, `${flag} takes a value`);
      own[key] = value;
    } else passed.push(arg);
  }
  if (passed.includes('-h') || passed.includes('--help')) {
    await write(io.stdout, KUBECTL_SLUICE_USAGE);
    return 0;
  }
  if (own.policy === undefined) return usageError(io, '--policy is required');
  let kc: KubeConfig;
  try {
    kc = io.kubeConfig(own.kubeconfig);
  } catch (err: unknown) {
    await write(
      io.stderr,
      `kubectl sluice: cannot load the kubeconfig: ${err instanceof Error ? err.message : String(err)}\n`,
    );
    return 1;
  }
  const namespace = own.namespace ?? kc.getContextObject(kc.getCurrentContext())?.namespace ?? 'default';
  let found: Awaited<ReturnType<typeof policyTargets>>;
  try {
    found = await policyTargets({
      client: new KubeClient(kc),
      kc,
      namespace,
      policy: own.policy,
      direct: own.direct,
    });
  } catch (err: unknown) {
    const message = err instanceof TargetsError || err instanceof Error ? err.message : String(err);
    await write(io.stderr, `kubectl sluice: ${message}\n`);
    return 1;
  }
  for (const skipped of found.skipped) await write(io.stderr, `kubectl sluice: skipped pod ${skipped}\n`);
  if (found.targets.length === 0) {
    await write(io.stderr, `kubectl sluice: relaypolicy "${own.policy}" has no running relay pod\n`);
    return 1;
  }
  const code = await runQueueCli(passed, {
    stdout: io.stdout,
    stderr: io.stderr,
    url: '',
    token: '',
    targets: found.targets,
    program: 'kubectl sluice queue',
  });
  // a pod left out is an answer that is not whole
  return code === 0 && found.skipped.length > 0 ? 1 : code;
}
