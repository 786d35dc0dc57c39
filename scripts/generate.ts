// `make generate`: rewrites the generated parts of the repository from their sources:
// the README reference tables (config, replies, errors, metrics) and the CRDs.
import { readFile, writeFile } from 'node:fs/promises';
import { renderCrds } from '../operator/src/api/render.ts';
import { renderOperatorMetrics } from '../operator/src/server/metrics-catalogue.ts';
import { renderReadme } from '../relay/src/docs/reference.ts';

async function update(url: URL, render: (current: string) => string): Promise<void> {
  const current = await readFile(url, 'utf8').catch(() => '');
  const next = render(current);
  if (next !== current) {
    await writeFile(url, next);
    process.stdout.write(`${url.pathname.split('/').slice(-2).join('/')} updated\n`);
  }
}

// the relay's tables, then the operator's (which the relay's code must not import)
await update(new URL('../README.md', import.meta.url), (readme) =>
  renderOperatorMetrics(renderReadme(readme)),
);
// crds/ for kubectl apply, and the chart's crds/ for helm install (the same bytes)
for (const [file, text] of Object.entries(renderCrds())) {
  await update(new URL(`../crds/${file}`, import.meta.url), () => text);
  await update(new URL(`../charts/sluice/crds/${file}`, import.meta.url), () => text);
}
