// JSON.parse keeps the last of two equal keys without a word; log readers differ on which
// one they keep. This finds keys that occur twice in one object of a JSON text.

/** Keys repeated within one object of the JSON text (as "path.key"), in order found. */
export function duplicateKeys(text: string): string[] {
  const found: string[] = [];
  // one frame per open object or array: the keys seen so far (objects only) and its path
  const stack: Array<{ keys: Set<string> | undefined; path: string }> = [];
  let pendingKey: string | undefined;
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const value = JSON.parse(text.slice(i, j + 1)) as string;
      let k = j + 1;
      while (text[k] === ' ' || text[k] === '\n' || text[k] === '\r' || text[k] === '\t') k++;
      const frame = stack.at(-1);
      if (text[k] === ':' && frame?.keys) {
        if (frame.keys.has(value)) found.push(frame.path ? `${frame.path}.${value}` : value);
        frame.keys.add(value);
        pendingKey = value;
      }
      i = j + 1;
      continue;
    }
    if (c === '{' || c === '[') {
      const parent = stack.at(-1);
      const name = parent?.keys ? (pendingKey ?? '') : '[]';
      const path = parent ? (parent.path ? `${parent.path}.${name}` : name) : '';
      stack.push({ keys: c === '{' ? new Set() : undefined, path });
    } else if (c === '}' || c === ']') stack.pop();
    i++;
  }
  return found;
}
