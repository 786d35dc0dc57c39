// kubectl's table output (`kubectl get`) read by column name, so a test asserts the
// columns it cares about and keeps passing when a column is added. kubectl left-aligns
// every column at the position of its header, and an empty cell is blank.

export interface KubectlTable {
  columns: string[];
  rows: Array<Record<string, string>>;
}

/** One table per resource type (kubectl separates them with a blank line). */
export function kubectlTables(output: string): KubectlTable[] {
  const tables: KubectlTable[] = [];
  for (const block of output.split(/\n\s*\n/)) {
    const [header, ...lines] = block.split('\n').filter((l) => l.trim() !== '');
    if (header === undefined) continue;
    const starts = [...header.matchAll(/\S+/g)].map((m) => ({ name: m[0], at: m.index }));
    const rows = lines.map((line) =>
      Object.fromEntries(
        starts.map(({ name, at }, i) => [name, line.slice(at, starts[i + 1]?.at ?? line.length).trim()]),
      ),
    );
    tables.push({ columns: starts.map((s) => s.name), rows });
  }
  return tables;
}

/** The row whose NAME is `name`, with only the named columns. */
export function row(
  table: KubectlTable | undefined,
  name: string,
  columns: readonly string[],
): Record<string, string> | undefined {
  const found = table?.rows.find((r) => r.NAME === name);
  return found && Object.fromEntries(columns.map((c) => [c, found[c] ?? '(no column)']));
}
