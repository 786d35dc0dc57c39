// A flame graph of a V8 CPU profile (`node --cpu-prof`) as a standalone SVG, so the
// profile's shape can be seen in the repository without DevTools: one box per call path,
// as wide as the time spent in it and what it called, the callers below their callees.
// Hovering a box shows its function, file and time. Paths narrower than a pixel are left
// out; the colour says where the code lives (a part of Sluice, a package, Node, native).

export interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/**
 * Each sample taken between `from` and `to` (µs, the profile's clock): the frame it was
 * in, its time in ms, and its call stack from that frame out (the root left out).
 */
export function* samplesIn(
  profile: CpuProfile,
  from: number,
  to: number,
): Generator<{ node: ProfileNode; ms: number; stack: ProfileNode[] }> {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  let at = profile.startTime;
  for (const [i, id] of profile.samples.entries()) {
    const dt = profile.timeDeltas[i] ?? 0;
    at += dt;
    const node = byId.get(id);
    if (at < from || at > to || !node) continue;
    const stack: ProfileNode[] = [];
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const frame = byId.get(cur);
      if (frame && frame.callFrame.functionName !== '(root)') stack.push(frame);
    }
    yield { node, ms: dt / 1000, stack };
  }
}

interface Box {
  name: string;
  owner: string;
  ms: number;
  children: Map<string, Box>;
}

const WIDTH = 1200;
const ROW = 16;
const TOP = 36;

function xmlText(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** A stable colour per owner: Sluice's own code warm, packages green, Node blue, native grey. */
function colour(owner: string): string {
  let hash = 0;
  for (const c of owner) hash = (hash * 31 + c.charCodeAt(0)) >>> 0;
  const shade = 55 + (hash % 20);
  if (owner.startsWith('sluice')) return `hsl(${20 + (hash % 25)}, 85%, ${shade}%)`;
  if (owner === 'node: internals') return `hsl(210, 55%, ${shade}%)`;
  if (owner.startsWith('(')) return `hsl(0, 0%, ${shade + 10}%)`;
  return `hsl(${90 + (hash % 60)}, 50%, ${shade}%)`;
}

/**
 * The SVG of the samples taken between `from` and `to` (µs, the profile's clock), idle
 * time left out. `frameName` and `owner` name a frame and the code it belongs to.
 */
export function flameGraphSvg(
  profile: CpuProfile,
  from: number,
  to: number,
  options: {
    title: string;
    frameName: (node: ProfileNode) => string;
    owner: (url: string, functionName: string) => string;
  },
): string {
  const root: Box = { name: 'all', owner: '(root)', ms: 0, children: new Map() };
  for (const { node: leaf, ms, stack } of samplesIn(profile, from, to)) {
    if (leaf.callFrame.functionName === '(idle)') continue;
    root.ms += ms;
    let box = root;
    for (const node of stack.reverse()) {
      const name = options.frameName(node);
      let child = box.children.get(name);
      if (!child) {
        child = {
          name,
          owner: options.owner(node.callFrame.url, node.callFrame.functionName),
          ms: 0,
          children: new Map(),
        };
        box.children.set(name, child);
      }
      child.ms += ms;
      box = child;
    }
  }

  const scale = root.ms > 0 ? WIDTH / root.ms : 0;
  const rects: Array<{ box: Box; x: number; depth: number }> = [];
  let depth = 0;
  const place = (box: Box, x: number, level: number) => {
    if (box.ms * scale < 1) return;
    rects.push({ box, x, depth: level });
    depth = Math.max(depth, level);
    let offset = x;
    for (const child of [...box.children.values()].sort((a, b) => a.name.localeCompare(b.name))) {
      place(child, offset, level + 1);
      offset += child.ms * scale;
    }
  };
  place(root, 0, 0);

  const height = TOP + (depth + 1) * ROW + 8;
  const parts = rects.map(({ box, x, depth: level }) => {
    const w = box.ms * scale;
    const y = TOP + (depth - level) * ROW;
    const share = root.ms > 0 ? (100 * box.ms) / root.ms : 0;
    const tip = `${box.name} — ${box.ms.toFixed(1)} ms (${share.toFixed(1)} %) · ${box.owner}`;
    const chars = Math.floor((w - 4) / 6.5);
    const label =
      chars >= 3 ? (box.name.length <= chars ? box.name : `${box.name.slice(0, chars - 1)}…`) : '';
    return (
      `<g><title>${xmlText(tip)}</title>` +
      `<rect x="${x.toFixed(2)}" y="${y}" width="${w.toFixed(2)}" height="${ROW - 1}" rx="2" fill="${colour(box.owner)}"/>` +
      (label ? `<text x="${(x + 3).toFixed(2)}" y="${y + ROW - 4}">${xmlText(label)}</text>` : '') +
      '</g>'
    );
  });
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="monospace" font-size="11">`,
    `<rect width="100%" height="100%" fill="#fdfdf8"/>`,
    `<text x="4" y="16" font-size="13">${xmlText(options.title)}</text>`,
    `<text x="4" y="30" fill="#555">${xmlText(`${root.ms.toFixed(0)} ms of main-thread CPU; width is time, callers below their callees; hover a box for its time`)}</text>`,
    ...parts,
    '</svg>',
    '',
  ].join('\n');
}
