// Markdown reference tables generated from the sources of truth (the config schema,
// the reply table, the error catalogue, the metrics), so the README cannot drift from the code.
// `make generate` writes them into README.md; a test fails when README.md is stale.
import type { TSchema } from '@sinclair/typebox';
import { RelayConfigSchema, UsersFileSchema } from '../config/schema.ts';
import { ERROR_CODES } from '../errors.ts';
import { LIBRARY_REPLIES, REPLIES, type ReplySpec } from '../smtp/replies.ts';
import { metricsTable, relayMetricDocs } from './metrics-catalogue.ts';

interface Row {
  path: string;
  type: string;
  def: string;
  description: string;
}

function typeOf(schema: TSchema): string {
  if (schema.anyOf) {
    const literals = (schema.anyOf as TSchema[]).map((s) =>
      s.const !== undefined ? JSON.stringify(s.const) : typeOf(s),
    );
    return literals.join(' | ');
  }
  if (schema.type === 'array') {
    const item = typeOf(schema.items as TSchema);
    return item.includes(' | ') ? `(${item})[]` : `${item}[]`;
  }
  const bounds = [
    schema.minimum !== undefined ? `≥ ${schema.minimum}` : '',
    schema.maximum !== undefined ? `≤ ${schema.maximum}` : '',
  ].filter(Boolean);
  return `${String(schema.type)}${bounds.length ? ` (${bounds.join(', ')})` : ''}`;
}

function walk(schema: TSchema, prefix: string, required: boolean, rows: Row[]): void {
  const isObject = schema.type === 'object' && schema.properties;
  const isObjectArray = schema.type === 'array' && (schema.items as TSchema).type === 'object';
  if (prefix) {
    const def =
      schema.default === undefined ? (required ? '*required*' : '') : `\`${JSON.stringify(schema.default)}\``;
    const type = isObject ? 'object' : isObjectArray ? 'object[]' : typeOf(schema);
    rows.push({ path: prefix, type, def, description: String(schema.description ?? '') });
  }
  const target = isObjectArray ? (schema.items as TSchema) : isObject ? schema : undefined;
  if (!target) return;
  const requiredKeys = new Set<string>((target.required as string[] | undefined) ?? []);
  for (const [key, child] of Object.entries(target.properties as Record<string, TSchema>)) {
    const path = `${prefix}${isObjectArray ? '[]' : ''}${prefix ? '.' : ''}${key}`;
    walk(child, path, requiredKeys.has(key), rows);
  }
}

function table(header: string[], rows: string[][]): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  return [
    `| ${header.join(' | ')} |`,
    `| ${header.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}

function schemaTable(schema: TSchema): string {
  const rows: Row[] = [];
  walk(schema, '', true, rows);
  return table(
    ['field', 'type', 'default', 'meaning'],
    rows.map((r) => [`\`${r.path}\``, r.type, r.def, r.description]),
  );
}

export function configReference(): string {
  return schemaTable(RelayConfigSchema);
}

export function usersReference(): string {
  return schemaTable(UsersFileSchema);
}

export function replyCatalogue(): string {
  const ours = Object.entries(REPLIES).map(([key, spec]: [string, ReplySpec]) => [
    `\`${key}\``,
    String(spec.code),
    spec.enhanced,
    spec.text,
    `\`${spec.reason}\``,
  ]);
  const library = LIBRARY_REPLIES.map((spec) => [
    '(smtp-server)',
    String(spec.code),
    spec.enhanced,
    spec.text,
    `\`${spec.reason}\``,
  ]);
  return table(['reply', 'code', 'enhanced', 'text', 'reason label'], [...ours, ...library]);
}

export function errorCatalogue(): string {
  return table(
    ['code', 'meaning'],
    Object.entries(ERROR_CODES).map(([code, meaning]) => [`\`${code}\``, meaning]),
  );
}

export const GENERATED_SECTIONS: Record<string, () => string> = {
  'config-reference': configReference,
  'users-reference': usersReference,
  'reply-catalogue': replyCatalogue,
  'error-catalogue': errorCatalogue,
  'relay-metrics': () => metricsTable(relayMetricDocs()),
};

/** README text with every generated section (these, or the relay's) replaced by its current content. */
export function renderReadme(
  readme: string,
  sections: Record<string, () => string> = GENERATED_SECTIONS,
): string {
  let out = readme;
  for (const [name, render] of Object.entries(sections)) {
    const begin = `<!-- BEGIN generated:${name} -->`;
    const end = `<!-- END generated:${name} -->`;
    const start = out.indexOf(begin);
    const stop = out.indexOf(end);
    if (start === -1 || stop === -1) throw new Error(`README.md lacks the ${name} markers`);
    out = `${out.slice(0, start + begin.length)}\n${render()}\n${out.slice(stop)}`;
  }
  return out;
}
