import { readFileSync } from 'node:fs';
import type { AnySchemaObject, ErrorObject, ValidateFunction } from 'ajv';
import { BerthError } from '../errors.js';
import { joinPointer, pointerSegments, type Anchor } from './position.js';
import * as generated from './validators.generated.js';

/**
 * The JSON Schemas of schemas/ (one per kind, the truth about what a manifest
 * may say), checked by the code ajv compiled from them in strict mode at build
 * time (compile.ts), and ajv's findings turned into plain English with a hint
 * each. Knows nothing of files or YAML: it gets a parsed value and returns
 * problems at JSON pointers.
 */

export const KINDS = ['Container', 'Image'] as const;
export type Kind = (typeof KINDS)[number];

export const SCHEMA_FILES: Readonly<Record<Kind, string>> = { Container: 'container.schema.json', Image: 'image.schema.json' };

/** schemas/ at the top of the package; this file is compiled to dist/src/manifests/. */
export const SCHEMA_DIRECTORY = new URL('../../../schemas/', import.meta.url);

/** A finding about one value of a manifest object, before it has a file position. */
export interface Problem {
  pointer: string;
  /** Point at the key naming the value (an unknown field) or the value itself. */
  anchor: Anchor;
  message: string;
  hint: string;
}

interface Compiled {
  validate: ValidateFunction;
  schema: AnySchemaObject;
}

let compiled: Map<Kind, Compiled> | undefined;

export function readSchema(file: string): AnySchemaObject {
  const url = new URL(file, SCHEMA_DIRECTORY);
  try {
    return JSON.parse(readFileSync(url, 'utf8')) as AnySchemaObject;
  } catch (err) {
    throw new BerthError('INTERNAL', `cannot read the manifest schema ${url.pathname}: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
      hint: 'the schemas/ directory of the berth installation is missing or damaged; reinstall berth',
    });
  }
}

function validators(): Map<Kind, Compiled> {
  if (!compiled) {
    // The schema itself is read for the descriptions and field lists that errors quote.
    compiled = new Map(KINDS.map((kind) => [kind, { validate: (generated as Record<Kind, ValidateFunction>)[kind], schema: readSchema(SCHEMA_FILES[kind]) }]));
  }
  return compiled;
}

/** Problems of `value` against the schema of `kind`, pointers prefixed with `base`; none when it is valid. */
export function validateObject(kind: Kind, value: unknown, base = ''): Problem[] {
  const { validate, schema } = validators().get(kind)!;
  if (validate(value)) return [];
  const problems: Problem[] = [];
  for (const e of validate.errors ?? []) {
    const p = explain(e, schema);
    if (p) problems.push({ ...p, pointer: base + p.pointer });
  }
  return problems;
}

/** One ajv error in plain English; undefined for errors that only repeat another (propertyNames' wrapper). */
function explain(e: ErrorObject, root: AnySchemaObject): Problem | undefined {
  const at = e.instancePath;
  const parent = e.parentSchema ?? {};
  const data: unknown = e.data;
  const help = describe(e, root);
  const params = e.params as Record<string, unknown>;
  const subject = subjectOf(at);
  switch (e.keyword) {
    case 'additionalProperties': {
      const field = String(params.additionalProperty);
      const allowed = Object.keys((parent.properties ?? {}) as Record<string, unknown>);
      const guess = suggest(field, allowed);
      return {
        pointer: joinPointer(at, field),
        anchor: 'key',
        message: `unknown field ${q(field)}`,
        hint: guess ? `did you mean ${q(guess)}?` : `the fields allowed here are ${allowed.join(', ')}`,
      };
    }
    case 'required': {
      const field = String(params.missingProperty);
      const property = resolve(((parent.properties ?? {}) as Record<string, AnySchemaObject>)[field], root);
      return { pointer: joinPointer(at, field), anchor: 'key', message: `missing required field ${q(field)}`, hint: property?.description ? `add ${field} — ${property.description}` : `add ${field}` };
    }
    case 'type': {
      const expected = String(params.type).split(',').map(article).join(' or ');
      const quotable = String(params.type).includes('string') && (typeof data === 'number' || typeof data === 'boolean');
      return {
        pointer: at,
        anchor: 'value',
        message: data === null ? `${subject} is empty; it must be ${expected}` : `${subject} must be ${expected}, not ${article(typeName(data))}`,
        hint: quotable ? `quote the value to make it a string: "${String(data)}"` : help,
      };
    }
    case 'enum': {
      const values = (params.allowedValues as unknown[]).map(String);
      const guess = typeof data === 'string' ? suggest(data, values) : undefined;
      return { pointer: at, anchor: 'value', message: `${subject} must be one of ${values.join(', ')}, not ${show(data)}`, hint: guess ? `did you mean ${q(guess)}?` : help };
    }
    case 'const':
      return { pointer: at, anchor: 'value', message: `${subject} must be ${show(params.allowedValue)}, not ${show(data)}`, hint: help };
    case 'pattern': {
      if (e.propertyName !== undefined) {
        return { pointer: joinPointer(at, e.propertyName), anchor: 'key', message: `${q(e.propertyName)} is not allowed as a name here`, hint: help };
      }
      const what = typeof parent.title === 'string' ? parent.title.toLowerCase() : 'value';
      return { pointer: at, anchor: 'value', message: `${subject} ${show(data)} is not a valid ${what}`, hint: help };
    }
    case 'propertyNames':
      return undefined;
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum': {
      const words = { minimum: 'at least', maximum: 'at most', exclusiveMinimum: 'more than', exclusiveMaximum: 'less than' }[e.keyword];
      return { pointer: at, anchor: 'value', message: `${subject} must be ${words} ${String(params.limit)}, not ${show(data)}`, hint: help };
    }
    case 'minLength':
      return { pointer: at, anchor: 'value', message: Number(params.limit) === 1 ? `${subject} must not be empty` : `${subject} must be at least ${String(params.limit)} characters long`, hint: help };
    case 'uniqueItems': {
      const [i, j] = [Number(params.i), Number(params.j)].sort((a, b) => a - b) as [number, number];
      const item = Array.isArray(data) ? data[j] : undefined;
      return { pointer: joinPointer(at, j), anchor: 'value', message: `${subject} lists ${show(item)} twice (items ${i} and ${j})`, hint: 'remove one of them' };
    }
    case 'discriminator': {
      const tag = String(params.tag);
      if (params.error === 'tag') return { pointer: joinPointer(at, tag), anchor: 'key', message: `missing required field ${q(tag)}`, hint: help };
      const values = ((parent.oneOf ?? []) as AnySchemaObject[]).map((s) => String((s.properties as Record<string, AnySchemaObject>)[tag]?.const));
      const guess = typeof params.tagValue === 'string' ? suggest(params.tagValue, values) : undefined;
      return { pointer: joinPointer(at, tag), anchor: 'value', message: `${subjectOf(joinPointer(at, tag))} must be one of ${values.join(', ')}, not ${show(params.tagValue)}`, hint: guess ? `did you mean ${q(guess)}?` : help };
    }
    default:
      return { pointer: at, anchor: 'value', message: `${subject} ${e.message ?? `fails the schema's ${e.keyword} rule`}`, hint: help };
  }
}

/**
 * The description nearest the failing keyword: of the schema holding it, else
 * of the closest enclosing schema along the error's schema path.
 */
function describe(e: ErrorObject, root: AnySchemaObject): string {
  if (typeof e.parentSchema?.description === 'string') return e.parentSchema.description;
  const path = e.schemaPath.replace(/^#\/?/, '').split('/').slice(0, -1);
  let best = typeof root.description === 'string' ? root.description : '';
  let node: unknown = root;
  for (const segment of path) {
    node = (node as Record<string, unknown> | undefined)?.[segment.replace(/~1/g, '/').replace(/~0/g, '~')];
    const d = (resolve(node as AnySchemaObject | undefined, root))?.description;
    if (typeof d === 'string') best = d;
  }
  return best;
}

/** A schema with a local `$ref` ("#/definitions/x") replaced by its target, its own title and description kept. */
function resolve(s: AnySchemaObject | undefined, root: AnySchemaObject): AnySchemaObject | undefined {
  if (!s || typeof s !== 'object' || typeof s.$ref !== 'string' || !s.$ref.startsWith('#/')) return s;
  let target: unknown = root;
  for (const segment of s.$ref.slice(2).split('/')) target = (target as Record<string, unknown> | undefined)?.[segment];
  return { ...(target as AnySchemaObject), ...s };
}

/**
 * The allowed name closest to a misspelt one, when close enough to be a
 * likely slip: a few edits away (case ignored), or containing it or contained
 * in it ("imagePullPolicy" → "pullPolicy").
 */
export function suggest(word: string, candidates: readonly string[]): string | undefined {
  const w = word.toLowerCase();
  let best: { name: string; distance: number } | undefined;
  for (const name of candidates) {
    const n = name.toLowerCase();
    const distance = editDistance(w, n);
    const contained = Math.min(n.length, w.length) >= 4 && (w.includes(n) || n.includes(w));
    if ((contained || distance <= Math.max(2, Math.floor(w.length / 3))) && (!best || distance < best.distance)) best = { name, distance };
  }
  return best?.name;
}

/** Levenshtein distance. */
export function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(previous[j]! + 1, row[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = row;
  }
  return previous[b.length]!;
}

/** What a pointer names, for the start of a message: "/spec/mounts/1/target" → "target", "/spec/command/0" → "command[0]". */
export function subjectOf(pointer: string): string {
  const segments = pointerSegments(pointer);
  let indices = '';
  while (segments.length && /^\d+$/.test(segments[segments.length - 1]!)) indices = `[${segments.pop()}]${indices}`;
  const name = segments.pop();
  return name === undefined ? (indices ? `item ${indices}` : 'the manifest') : `${name}${indices}`;
}

function q(s: string): string {
  return JSON.stringify(s);
}

function show(v: unknown): string {
  return v === undefined ? 'nothing' : JSON.stringify(v);
}

function typeName(v: unknown): string {
  if (Array.isArray(v)) return 'list';
  if (v !== null && typeof v === 'object') return 'mapping';
  if (typeof v === 'number' || typeof v === 'boolean') return `${typeof v} (${v})`;
  return typeof v === 'string' ? `string (${JSON.stringify(v)})` : typeof v;
}

/** JSON Schema type names as words with an article: "a string", "an integer", "a mapping". */
function article(type: string): string {
  const word = type === 'object' ? 'mapping' : type === 'array' ? 'list' : type;
  return /^[aeiou]/.test(word) ? `an ${word}` : `a ${word}`;
}
