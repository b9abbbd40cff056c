/**
 * JSON pointers into manifest objects, RFC 6901 ("/spec/mounts/1/target",
 * "~1" for "/" and "~0" for "~"), and the positions they map to in the text
 * (yaml.ts finds those).
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
