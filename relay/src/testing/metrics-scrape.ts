// Reads /metrics the way Prometheus does: the text exposition format parsed into families
// (name, type, help, samples), so tests assert what a scrape really shows rather than what
// a registry object holds.

export interface Sample {
  /** The sample's own name (a histogram's are <family>_bucket, _sum and _count). */
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: string;
  help: string;
  samples: Sample[];
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

function unescapeText(value: string): string {
  return value.replace(/\\(.)/g, (_m, c: string) => (c === 'n' ? '\n' : c));
}

function number(text: string): number {
  if (text === '+Inf') return Number.POSITIVE_INFINITY;
  if (text === '-Inf') return Number.NEGATIVE_INFINITY;
  return Number(text);
}

/** Families by name, in the order the exposition lists them. */
export function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const family = (name: string): Family => {
    let f = families.get(name);
    if (!f) {
      f = { name, type: 'untyped', help: '', samples: [] };
      families.set(name, f);
    }
    return f;
  };
  let current: Family | undefined;
  for (const line of text.split('\n')) {
    const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
    if (meta) {
      current = family(meta[2] ?? '');
      if (meta[1] === 'TYPE') current.type = meta[3] ?? '';
      else current.help = unescapeText(meta[3] ?? '');
      continue;
    }
    const sample = SAMPLE.exec(line);
    if (!sample) continue;
    const name = sample[1] ?? '';
    const labels: Record<string, string> = {};
    for (const m of (sample[2] ?? '').matchAll(LABEL)) labels[m[1] ?? ''] = unescapeText(m[2] ?? '');
    // a sample belongs to the family it is listed under (histograms add suffixes)
    const owner = current && name.startsWith(current.name) ? current : family(name);
    owner.samples.push({ name, labels, value: number(sample[3] ?? '') });
  }
  return families;
}

export class Scrape {
  readonly families: Map<string, Family>;
  constructor(text: string) {
    this.families = parseExposition(text);
  }

  /** Sum of the samples of that name whose labels include the given ones (0 when there are none). */
  value(name: string, labels: Record<string, string> = {}): number {
    let sum = 0;
    for (const family of this.families.values()) {
      for (const s of family.samples) {
        if (s.name !== name) continue;
        if (Object.entries(labels).every(([k, v]) => s.labels[k] === v)) sum += s.value;
      }
    }
    return sum;
  }

  /** Every sample of every family. */
  samples(): Sample[] {
    return [...this.families.values()].flatMap((f) => f.samples);
  }
}

/** GET /metrics from an admin server on loopback. */
export async function scrapeMetrics(adminPort: number): Promise<Scrape> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/metrics`);
  if (!res.ok) throw new Error(`/metrics answered ${res.status}`);
  return new Scrape(await res.text());
}
