import { isAlias, isMap, isPair, isScalar, isSeq, LineCounter, parseAllDocuments, visit, type Document, type Node } from 'yaml';
import { checkItems, type Declared, type ManifestError, type ManifestObject, type ParsedObject, type SourceItem } from './check.js';
import { pointerSegments, type Anchor, type Position } from './position.js';

/**
 * Manifest text through the yaml library: documents (JSON is YAML too), each
 * a mapping or a list of them, with every node's place in the text, and
 * yaml's syntax errors with a hint each. load.ts imports this module only
 * when it must parse a file (yaml is 70 modules, ~50 ms to load, and as much
 * again to parse 100 objects), not for a file whose parse it has cached.
 */

/** The objects of one file's text, or its errors (then the objects count for nothing). */
export function parseManifests(text: string, file: string): { objects: ManifestObject[]; errors: ManifestError[] } {
  const r = parseFile(text, file);
  return { objects: r.errors.length ? [] : r.objects.map((p) => p.object), errors: r.errors };
}

/** A file's objects, errors (syntax, schema, values; sorted by position) and the kind/names it declares. */
export function parseFile(text: string, file: string): { objects: ParsedObject[]; errors: ManifestError[]; declared: Declared[]; items: SourceItem[] } {
  const read = readYaml(text, file);
  const checked = checkItems(read.items, file);
  const errors = [...read.errors, ...checked.errors].sort((a, b) => a.line - b.line || a.col - b.col);
  return { ...checked, errors, items: read.items };
}

/** The items of every document without syntax errors, and the syntax errors of the others. */
function readYaml(text: string, file: string): { items: SourceItem[]; errors: ManifestError[] } {
  const lines = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const items: SourceItem[] = [];
  const errors: ManifestError[] = [];
  if (!Array.isArray(docs)) return { items, errors }; // no document at all

  for (const doc of docs) {
    if (doc.errors.length) {
      for (const e of doc.errors) {
        // yaml places an unclosed quote's error at the end of the text; where the quote opens helps more.
        const offset = (e.code === 'MISSING_CHAR' ? unclosedQuote(doc, text) : undefined) ?? e.pos[0];
        const { line, col } = lines.linePos(offset);
        errors.push({ code: 'YAML', file, line, col, pointer: '', message: e.message, hint: YAML_HINTS[e.code] ?? 'fix the YAML syntax here' });
      }
      continue;
    }
    const root = doc.contents as Node | null;
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (err) {
      const { line, col } = lines.linePos(root?.range?.[0] ?? 0);
      errors.push({ code: 'YAML', file, line, col, pointer: '', message: err instanceof Error ? err.message : String(err), hint: 'use fewer aliases (*name); write the values out' });
      continue;
    }
    if (value === null || value === undefined || !root) continue;
    const at = (pointer: string, anchor: Anchor): Position => locate(doc as Document, root, pointer, anchor, lines);
    if (Array.isArray(value) && isSeq(root)) value.forEach((v, i) => items.push({ value: v, base: `/${i}`, at }));
    else items.push({ value, base: '', at });
  }
  return { items, errors };
}

/** Where the last quoted scalar without its closing quote opens. */
function unclosedQuote(doc: Document.Parsed, text: string): number | undefined {
  let offset: number | undefined;
  visit(doc, {
    Scalar(_, node) {
      if (!isScalar(node) || (node.type !== 'QUOTE_DOUBLE' && node.type !== 'QUOTE_SINGLE') || !node.range) return;
      const source = text.slice(node.range[0], node.range[1]).trimEnd();
      if (source.length < 2 || source[source.length - 1] !== source[0]) offset = node.range[0];
    },
  });
  return offset;
}

/** yaml's error codes → what to do about them. */
const YAML_HINTS: Readonly<Record<string, string>> = {
  TAB_AS_INDENT: 'indent with spaces; YAML does not allow tabs for indentation',
  BAD_INDENT: 'line up the keys of a mapping and the items of a list at the same indentation, with spaces',
  DUPLICATE_KEY: 'a mapping holds each key once; remove or rename one of them',
  MISSING_CHAR: 'a quote or bracket is not closed; close it',
  BAD_DQ_ESCAPE: 'in double quotes, write a backslash as \\\\, or use single quotes',
  BAD_ALIAS: 'an alias (*name) must refer to an anchor (&name) defined before it',
  BLOCK_AS_IMPLICIT_KEY: 'a key is missing its ":", or a value holding ": " or " #" needs quotes',
  MULTILINE_IMPLICIT_KEY: 'a key is missing its ":", or a value holding ": " or " #" needs quotes',
  UNEXPECTED_TOKEN: 'check this line for a missing ":" or a value that needs quotes (one starting with @, `, %, * or &)',
  BAD_SCALAR_START: 'quote values starting with @, `, %, * or &',
};

/**
 * The position of the node at `pointer` below `root`. When the pointer goes
 * further than the text (a required field that is missing), the position of
 * the deepest part that exists: the key naming it when there is one, so a
 * missing `spec.image` points at `spec:`.
 */
function locate(doc: Document, root: Node, pointer: string, anchor: Anchor, lines: LineCounter): Position {
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
