import { desiredObject, type DesiredObject } from './desired.js';
import { joinPointer, type Anchor, type Position } from './position.js';
import { KINDS, suggest, validateObject, type Kind, type Problem } from './schema.js';

/**
 * From parsed values to manifest objects: the kind, the schema, the values
 * (desired.ts), each finding placed at file:line:col. Knows nothing of YAML:
 * a value comes with a function that says where a pointer into it sits in
 * the text (yaml.ts makes those; load.ts's cache has only each object's own
 * position, enough for a file without errors).
 */

export type ManifestErrorCode = 'YAML' | 'SCHEMA' | 'DUPLICATE' | 'DEPENDENCY' | 'CYCLE' | 'IO';

export interface ManifestError {
  code: ManifestErrorCode;
  file: string;
  /** 1-based; 0 (with col 0) when there is no position, as for a file that cannot be read. */
  line: number;
  col: number;
  message: string;
  /** JSON pointer into the document ("" for the document itself); for a list document it starts with the item's index. */
  pointer: string;
  hint: string;
  /** The object the error is about, when its kind and name are known: the reconciler must leave it as it is. */
  object?: { kind: string; name: string };
}

export type ManifestObject = DesiredObject;

/** One object read from a file: a document, or an item of a list document (then `base` is "/N"). */
export interface SourceItem {
  value: unknown;
  base: string;
  at(pointer: string, anchor: Anchor): Position;
}

/** An object that passed its schema, with what the checks across files need: where its parts are. */
export interface ParsedObject {
  object: ManifestObject;
  base: string;
  at(pointer: string, anchor: Anchor): Position;
}

/** A kind and name seen in a file, valid or not, to explain later why a dependency is missing. */
export interface Declared {
  kind: string;
  name: string;
  file: string;
}

/** Checks a file's items: its valid objects, its errors, and every kind/name it declares (valid or not). */
export function checkItems(items: readonly SourceItem[], file: string): { objects: ParsedObject[]; errors: ManifestError[]; declared: Declared[] } {
  const objects: ParsedObject[] = [];
  const errors: ManifestError[] = [];
  const declared: Declared[] = [];
  for (const { value, base, at } of items) {
    const r = checkObject(value, base, file, at);
    if (r.declared) declared.push(r.declared);
    if (r.errors.length) errors.push(...r.errors);
    else if (r.object) objects.push({ object: r.object, base, at });
  }
  return { objects, errors, declared };
}

function checkObject(value: unknown, base: string, file: string, at: ParsedObject['at']): { object?: ManifestObject; errors: ManifestError[]; declared?: Declared } {
  const error = (p: Problem, object?: Declared): ManifestError => {
    const { line, col } = at(p.pointer, p.anchor);
    return { code: 'SCHEMA', file, line, col, pointer: p.pointer, message: p.message, hint: p.hint, ...(object ? { object: { kind: object.kind, name: object.name } } : {}) };
  };
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    const what = Array.isArray(value) ? 'a list' : `a ${typeof value}`;
    const p: Problem = { pointer: base, anchor: 'value', message: `a manifest must be a mapping with apiVersion, kind, metadata and spec, not ${what}`, hint: 'start the document with apiVersion: berth/v1' };
    return { errors: [error(p)] };
  }
  const fields = value as Record<string, unknown>;
  const kind = fields.kind;
  const name = (fields.metadata as Record<string, unknown> | undefined)?.name;
  const declared = typeof kind === 'string' && typeof name === 'string' ? { kind, name, file } : undefined;

  if (typeof kind !== 'string' || !(KINDS as readonly string[]).includes(kind)) {
    const guess = typeof kind === 'string' ? suggest(kind, KINDS) : undefined;
    const p: Problem =
      kind === undefined
        ? { pointer: joinPointer(base, 'kind'), anchor: 'key', message: 'missing required field "kind"', hint: `add kind: one of ${KINDS.join(', ')}` }
        : { pointer: joinPointer(base, 'kind'), anchor: 'value', message: `unknown kind ${JSON.stringify(kind)}`, hint: guess ? `did you mean ${JSON.stringify(guess)}?` : `berth knows the kinds ${KINDS.join(', ')}` };
    return { errors: [error(p, declared)], declared };
  }
  const problems = validateObject(kind as Kind, value, base);
  if (problems.length) return { errors: problems.map((p) => error(p, declared)), declared };

  const { line, col } = at(base, 'value');
  const r = desiredObject(kind as Kind, value, { file, line, col }, base);
  return { object: r.object, errors: r.problems.map((p) => error(p, declared)), declared };
}
