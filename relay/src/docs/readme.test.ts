import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { it } from 'node:test';
import { renderReadme } from './reference.ts';

const README = new URL('../../../README.md', import.meta.url);

it('README.md carries the current config, reply and error reference (run `make generate` if not)', async () => {
  const readme = await readFile(README, 'utf8');
  assert.equal(readme, renderReadme(readme));
});
