// `make generate`: rewrites every generated file of the repository from its source
// (scripts/reference.ts lists them).
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { generatedFiles } from './reference.ts';

const root = new URL('../', import.meta.url);
for (const [path, render] of Object.entries(generatedFiles())) {
  const url = new URL(path, root);
  const current = await readFile(url, 'utf8').catch(() => '');
  const next = render();
  if (next !== current) {
    await mkdir(dirname(url.pathname), { recursive: true });
    await writeFile(url, next);
    process.stdout.write(`${path} updated\n`);
  }
}
