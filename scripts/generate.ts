// `make generate`: rewrites the generated parts of the repository from their sources.
import { readFile, writeFile } from 'node:fs/promises';
import { renderReadme } from '../relay/src/docs/reference.ts';

const readmePath = new URL('../README.md', import.meta.url);
const readme = await readFile(readmePath, 'utf8');
const next = renderReadme(readme);
if (next !== readme) {
  await writeFile(readmePath, next);
  process.stdout.write('README.md updated\n');
}
