import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { Type } from '@sinclair/typebox';
import { parse } from 'yaml';
import { relayPolicyCrd, sendingDomainCrd, smtpUserCrd, structural } from './crd.ts';
import { renderCrds } from './render.ts';

const CRDS = new URL('../../../crds/', import.meta.url);

type Json = Record<string, unknown>;

/** Every schema node must be typed or preserve unknown fields; no forbidden keywords. */
function assertStructural(node: Json, path: string): void {
  // an int-or-string quantity is Kubernetes' one allowed anyOf, and has no type of its own
  if (node['x-kubernetes-int-or-string']) {
    assert.deepEqual(node.anyOf, [{ type: 'integer' }, { type: 'string' }], path);
    return;
  }
  for (const banned of ['additionalProperties', 'uniqueItems', 'anyOf', 'const', '$id']) {
    if (banned === 'additionalProperties' && typeof node[banned] === 'object') continue;
    assert.ok(!(banned in node), `${path} has ${banned}`);
  }
  assert.ok(node.type || node['x-kubernetes-preserve-unknown-fields'], `${path} has no type`);
  for (const [k, v] of Object.entries((node.properties as Record<string, Json>) ?? {}))
    assertStructural(v, `${path}.${k}`);
  if (node.items) assertStructural(node.items as Json, `${path}[]`);
  if (typeof node.additionalProperties === 'object')
    assertStructural(node.additionalProperties as Json, `${path}{}`);
}

describe('CRD generation', () => {
  it('turns unions of literals into enums and unique lists into sets', () => {
    const s = structural(
      Type.Object(
        {
          mode: Type.Union([Type.Literal('a'), Type.Literal('b')], { default: 'a' }),
          tags: Type.Array(Type.String(), { uniqueItems: true }),
        },
        { additionalProperties: false },
      ),
    );
    assert.deepEqual(s.properties, {
      mode: { type: 'string', enum: ['a', 'b'], default: 'a' },
      tags: { type: 'array', items: { type: 'string' }, 'x-kubernetes-list-type': 'set' },
    });
  });

  it('produces structural schemas with CEL rules, a scale subresource and printer columns', () => {
    const crd = relayPolicyCrd() as { spec: { versions: Json[] } };
    const version = crd.spec.versions[0] as Json;
    const schema = (version.schema as Json).openAPIV3Schema as Json;
    assertStructural(schema, 'RelayPolicy');
    const spec = (schema.properties as Record<string, Json>).spec as Json;
    const autoscaling = (spec.properties as Record<string, Json>).autoscaling as Json;
    assert.deepEqual(autoscaling['x-kubernetes-validations'], [
      { rule: 'self.minReplicas <= self.maxReplicas', message: 'minReplicas must not exceed maxReplicas' },
    ]);
    assert.deepEqual((version.subresources as Json).scale, {
      specReplicasPath: '.spec.replicas',
      statusReplicasPath: '.status.replicas',
      labelSelectorPath: '.status.selector',
    });
    const limits = (spec.properties as Record<string, Json>).limits as Json;
    const maxRecipients = (limits.properties as Record<string, Json>).maxRecipients as Json;
    assert.equal(maxRecipients.default, 30, 'the relay schema default reaches the CRD');
  });
});

describe('the SendingDomain CRD', () => {
  it('is structural and shows the DNS conditions as printer columns', () => {
    const crd = sendingDomainCrd() as { spec: { versions: Json[] } };
    const version = crd.spec.versions[0] as Json;
    assertStructural((version.schema as Json).openAPIV3Schema as Json, 'SendingDomain');
    const columns = (version.additionalPrinterColumns as Array<{ name: string; jsonPath: string }>).map(
      (c) => [c.name, c.jsonPath],
    );
    assert.deepEqual(columns.slice(2, 7), [
      ['Selector', '.status.signingSelector'],
      ['DKIM', '.status.conditions[?(@.type=="DkimPublished")].status'],
      ['SPF', '.status.conditions[?(@.type=="SpfAuthorizesRelay")].status'],
      ['DMARC', '.status.conditions[?(@.type=="DmarcPolicy")].reason'],
      ['Ready', '.status.conditions[?(@.type=="Ready")].status'],
    ]);
  });
});

it('renders CRDs that YAML 1.1 readers (helm, kubectl) read as written: headerFrom off stays a string', () => {
  const rendered = renderCrds();
  const expected: Record<string, unknown> = {
    'sluice.dev_relaypolicies.yaml': relayPolicyCrd(),
    'sluice.dev_sendingdomains.yaml': sendingDomainCrd(),
    'sluice.dev_smtpusers.yaml': smtpUserCrd(),
  };
  for (const [file, text] of Object.entries(rendered)) {
    assert.deepEqual(parse(text, { version: '1.1' }), expected[file], file);
  }
});

describe('numeric bounds in the CRDs', () => {
  /** Paths of integer and number fields in a spec that lack a minimum or a maximum. */
  function unbounded(node: Json, path: string): string[] {
    const out: string[] = [];
    if ((node.type === 'integer' || node.type === 'number') && !('minimum' in node && 'maximum' in node)) {
      out.push(path);
    }
    for (const [k, v] of Object.entries((node.properties as Record<string, Json>) ?? {})) {
      out.push(...unbounded(v, `${path}.${k}`));
    }
    if (node.items) out.push(...unbounded(node.items as Json, `${path}[]`));
    return out;
  }

  function specOf(crd: Json): Json {
    const [version] = (crd.spec as { versions: Array<{ schema: { openAPIV3Schema: Json } }> }).versions;
    assert.ok(version);
    const schema = version.schema.openAPIV3Schema;
    return (schema.properties as Record<string, Json>).spec as Json;
  }
  const field = (node: Json, ...keys: string[]): Json =>
    keys.reduce((n, k) => (n.properties as Record<string, Json>)[k] as Json, node);

  it('bounds every number in a RelayPolicy or SmtpUser spec, so the API server refuses what the relay would', () => {
    for (const crd of [relayPolicyCrd(), smtpUserCrd()]) assert.deepEqual(unbounded(specOf(crd), 'spec'), []);
    assert.equal(field(specOf(relayPolicyCrd()), 'delivery', 'connectTimeoutSeconds').maximum, 600);
    assert.equal(field(specOf(relayPolicyCrd()), 'drainDeadlineSeconds').maximum, 86400);
  });

  it('describes every field of every CRD in crds/, for kubectl explain', async () => {
    const undescribed: string[] = [];
    const walk = (node: Json, path: string) => {
      for (const [k, v] of Object.entries((node.properties as Record<string, Json>) ?? {})) {
        // the root's metadata is Kubernetes' ObjectMeta: the API server allows only its type here
        if (path.indexOf('.') < 0 && k === 'metadata') continue;
        if (typeof v.description !== 'string' || v.description.length < 3) undescribed.push(`${path}.${k}`);
        walk(v, `${path}.${k}`);
      }
      if (node.items) walk(node.items as Json, `${path}[]`);
      if (typeof node.additionalProperties === 'object') walk(node.additionalProperties as Json, `${path}{}`);
    };
    const files = (await readdir(CRDS)).filter((f) => f.endsWith('.yaml'));
    assert.ok(files.length >= 2);
    for (const file of files) {
      const crd = parse(await readFile(new URL(file, CRDS), 'utf8')) as {
        spec: { names: { kind: string }; versions: Array<{ schema: { openAPIV3Schema: Json } }> };
      };
      for (const v of crd.spec.versions) walk(v.schema.openAPIV3Schema, crd.spec.names.kind);
    }
    assert.deepEqual(undescribed, [], `fields without a description: ${undescribed.join(', ')}`);
  });

  it('writes CRD files without YAML anchors or aliases, and lists of listeners and conditions as maps', async () => {
    for (const file of (await readdir(CRDS)).filter((f) => f.endsWith('.yaml'))) {
      const text = await readFile(new URL(file, CRDS), 'utf8');
      assert.doesNotMatch(text, /(^|\s)[&*][A-Za-z0-9_-]+(\s|$)/m, `${file} has an anchor or alias`);
    }
    const crd = relayPolicyCrd() as { spec: { versions: Array<{ schema: { openAPIV3Schema: Json } }> } };
    /** The schema node at a path of property names. */
    const at = (...path: string[]): Json =>
      path.reduce<Json>(
        (node, key) => ((node.properties ?? {}) as Record<string, Json>)[key] ?? {},
        crd.spec.versions[0]?.schema.openAPIV3Schema ?? {},
      );
    const listeners = at('spec', 'listeners');
    assert.equal(listeners['x-kubernetes-list-type'], 'map');
    assert.deepEqual(listeners['x-kubernetes-list-map-keys'], ['name']);
    const conditions = at('status', 'conditions');
    assert.equal(conditions['x-kubernetes-list-type'], 'map');
    assert.deepEqual(conditions['x-kubernetes-list-map-keys'], ['type']);
    const cpu = at('spec', 'resources', 'requests', 'cpu');
    assert.equal(cpu['x-kubernetes-int-or-string'], true);
  });
});
