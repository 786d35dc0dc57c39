// A reference table of every field of a TypeBox (JSON Schema) object: dotted path, type
// with bounds, default and description. The relay's config and users file references are
// made from the same schema the relay validates with, so they cannot drift.
import type { TSchema } from '@sinclair/typebox';
import { markdownTable } from './markdown.ts';

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

/** Every field of an object schema as a Markdown table. */
export function schemaTable(schema: TSchema): string {
  const rows: Row[] = [];
  walk(schema, '', true, rows);
  return markdownTable(
    ['field', 'type', 'default', 'meaning'],
    rows.map((r) => [`\`${r.path}\``, r.type, r.def, r.description]),
  );
}
