import { isAlias, isMap, isPair, isScalar, isSeq, type Document, type LineCounter, type Node } from 'yaml';

/**
 * Where a JSON pointer's value sits in the YAML (or JSON) text it was parsed
 * from. Pointers are RFC 6901 ("/spec/mounts/1/target", "~1" for "/" and "~0"
 * for "~"), relative to `root`, the node a manifest object was read from.
 */

export interface Position {
  line: number;
  col: number;
}

/** What to point at: the value, or the key that names it (unknown fields, duplicate names). */
export type Anchor = 'value' | 'key';

export function pointerSegments(pointer: string): string[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

export function joinPointer(base: string, ...segments: Array<string | number>): string {
  return base + segments.map((s) => `/${String(s).replace(/~/g, '~0').replace(/\//g, '~1')}`).join('');
}

/**
 * The position of the node at `pointer` below `root`. When the pointer goes
 * further than the text (a required field that is missing), the position of
 * the deepest part that exists: the key naming it when there is one, so a
 * missing `spec.image` points at `spec:`.
 */
export function locate(doc: Document, root: Node, pointer: string, anchor: Anchor, lines: LineCounter): Position {
  let node: Node | undefined = root;
  let key: Node | undefined;
  for (const segment of pointerSegments(pointer)) {
    const next = child(doc, node, segment);
    if (!next) return at(key ?? node, lines);
    ({ node, key } = next);
  }
  // A key with nothing after it (`target:`) has an empty value node: point at the key.
  const empty = node === undefined || (isScalar(node) && node.value === null && node.source === '');
  return at(anchor === 'key' || empty ? (key ?? node) : node, lines);
}

function child(doc: Document, parent: Node | undefined, segment: string): { node: Node | undefined; key: Node | undefined } | undefined {
  const container = isAlias(parent) ? parent.resolve(doc) : parent;
  if (isMap(container)) {
    for (const pair of container.items) {
      if (!isPair(pair)) continue;
      const k = pair.key as Node | null;
      const name = isScalar(k) ? String(k.value) : undefined;
      if (name === segment) return { node: (pair.value as Node | null) ?? undefined, key: k ?? undefined };
    }
    return undefined;
  }
  if (isSeq(container) && /^\d+$/.test(segment)) {
    const item = container.items[Number(segment)] as Node | undefined;
    return item === undefined ? undefined : { node: item, key: undefined };
  }
  return undefined;
}

function at(node: Node | undefined, lines: LineCounter): Position {
  const offset = node?.range?.[0] ?? 0;
  return lines.linePos(offset);
}
