#!/usr/bin/env node
// Entry point of the kubectl plugin (`kubectl sluice ...` runs kubectl-sluice from PATH):
// the only place that reads argv and the kubeconfig lookup's environment.
import { KubeConfig } from '@kubernetes/client-node';
import { runKubectlSluice } from './kubectl-sluice-run.ts';

process.exitCode = await runKubectlSluice(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  kubeConfig: (path) => {
    const kc = new KubeConfig();
    // $KUBECONFIG, ~/.kube/config, else the in-cluster service account
    if (path === undefined) kc.loadFromDefault();
    else kc.loadFromFile(path);
    return kc;
  },
});
