// The README and the pages under docs/ link only to files of this repository that exist
// (a newcomer on a fresh clone has nothing else), and to anchors those pages have.
import assert from 'node:assert/strict';
import { readdir, readFile, stat } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { it } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

async function markdownFiles(): Promise<string[]> {
  const docs = (await readdir(join(ROOT, 'docs'), { recursive: true }))
    .filter((f) => f.endsWith('.md'))
    .map((f) => join(ROOT, 'docs', f));
  return [join(ROOT, 'README.md'), join(ROOT, 'e2e', 'README.md'), join(ROOT, 'bench', 'README.md'), ...docs];
}

/** GitHub's anchor for a heading. */
function anchor(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, '')
    .replace(/ /g, '-');
}

async function anchors(file: string): Promise<Set<string>> {
  const text = await readFile(file, 'utf8');
  return new Set([...text.matchAll(/^#{1,6} (.+)$/gm)].map((m) => anchor(m[1] ?? '')));
}

it('links in the README and docs/ point at files and headings of this repository', async () => {
  const broken: string[] = [];
  for (const file of await markdownFiles()) {
    const text = (await readFile(file, 'utf8')).replace(/```[\s\S]*?```/g, '');
    for (const match of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = match[1] ?? '';
      if (/^[a-z]+:/.test(target)) continue; // a web address
      const [path = '', hash] = target.split('#');
      const resolved = path ? resolve(dirname(file), path) : file;
      const where = `${relative(ROOT, file)} → ${target}`;
      if (!resolved.startsWith(`${ROOT}/`) && resolved !== ROOT) {
        broken.push(`${where}: outside the repository`);
        continue;
      }
      const info = await stat(resolved).catch(() => undefined);
      if (!info) broken.push(`${where}: no such file`);
      else if (hash && info.isFile() && resolved.endsWith('.md') && !(await anchors(resolved)).has(hash))
        broken.push(`${where}: no such heading`);
    }
  }
  assert.deepEqual(broken, []);
});
