// The manifests in examples/ are what the README tells platform teams to start from:
// they must match the CRD schemas (the API server test suite applies them too).
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { it } from 'node:test';
import { Value } from '@sinclair/typebox/value';
import { parseAllDocuments } from 'yaml';
import { RelayPolicySpecSchema, SmtpUserSpecSchema } from './schema.ts';
import { SendingDomainSpecSchema } from './sending-domain.ts';

const schemas: Record<
  string,
  typeof RelayPolicySpecSchema | typeof SmtpUserSpecSchema | typeof SendingDomainSpecSchema
> = {
  RelayPolicy: RelayPolicySpecSchema,
  SmtpUser: SmtpUserSpecSchema,
  SendingDomain: SendingDomainSpecSchema,
};

it('examples/ manifests match the CRD schemas', async () => {
  let checked = 0;
  for (const file of ['relaypolicy.yaml', 'smtpuser.yaml', 'sendingdomain.yaml']) {
    const text = await readFile(new URL(`../../../examples/${file}`, import.meta.url), 'utf8');
    for (const doc of parseAllDocuments(text)) {
      const obj = doc.toJS() as { kind: string; spec?: unknown };
      const schema = schemas[obj.kind];
      if (!schema) continue;
      const spec = Value.Default(schema, structuredClone(obj.spec));
      const errors = [...Value.Errors(schema, spec)].map((e) => `${e.path}: ${e.message}`);
      assert.deepEqual(errors, [], `${file} ${obj.kind}`);
      checked++;
    }
  }
  assert.equal(checked, 3);
});
