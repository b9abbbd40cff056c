import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { CachedItem, ParseCache } from './cache.js';
import { checkItems, type Declared, type ManifestError, type ManifestErrorCode, type ManifestObject, type ParsedObject, type SourceItem } from './check.js';
import type { DesiredContainer } from './desired.js';
import { joinPointer, type Anchor, type Position } from './position.js';
import { suggest } from './schema.js';

export type { ManifestError, ManifestErrorCode, ManifestObject } from './check.js';

/**
 * Reading manifests: files and directories → validated, normalised objects
 * and a list of everything wrong, each at file:line:col with a JSON pointer
 * and a hint. Never throws for bad input.
 *
 * - A directory contributes its *.yaml, *.yml and *.json files, its
 *   subdirectories too, in name order; dot files and dot directories (.git)
 *   and editors' and package managers' leftovers are ignored. A file named
 *   on its own is read whatever its name.
 * - A file holds any number of YAML documents (JSON is YAML too); a document
 *   is one object, or a list of objects. Empty documents are ignored.
 * - A file with any syntax, schema or value error is skipped whole: none of
 *   its objects is returned, so a half-edited file never half-applies.
 * - Across files: names are unique per kind (every object of a name given
 *   twice is dropped, reported at the second), dependsOn names existing
 *   containers, and dependencies have no cycle. Objects failing these are
 *   dropped, and so are the containers depending on them.
 */

export interface LoadResult {
  /** Valid objects, in file order, then document order. */
  objects: ManifestObject[];
  /** Sorted by file (in reading order), line and column. */
  errors: ManifestError[];
  /** Every file read (or that failed to be read), in reading order. */
  files: string[];
}

/** Files larger than this are refused: manifests are small, and a big file is more likely a mistake than a manifest. */
export const MAX_MANIFEST_FILE_BYTES = 4 * 1024 * 1024;

const MANIFEST_FILE = /\.(ya?ml|json)$/i;

/** Files read or stat'ed at once. */
const READ_BATCH = 32;

/** fn over the items, READ_BATCH at a time; the results in the items' order. */
async function inBatches<T, R>(items: readonly T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += READ_BATCH) out.push(...(await Promise.all(items.slice(i, i + READ_BATCH).map(fn))));
  return out;
}

/** Left behind by editors (vim .swp, emacs ~ and #…#), patch, dpkg, ucf and rpm: never manifests. */
export function isLeftover(name: string): boolean {
  return (
    name.startsWith('.') ||
    name.endsWith('~') ||
    /^#.*#$/.test(name) ||
    /\.(sw[a-p]|bak|orig|rej|tmp|rpmnew|rpmsave)$/i.test(name) ||
    /\.(dpkg|ucf)-[a-z]+$/i.test(name)
  );
}

export interface LoadOptions {
  /** Parses of error-free files by their text (cache.ts), so that an unchanged file is not parsed again. */
  cache?: ParseCache | undefined;
}

/** Thrown when a position beyond an object's own is asked of a cached parse: the load starts again without the cache. */
class PositionsNeeded extends Error {}

export async function loadManifests(paths: readonly string[], opts: LoadOptions = {}): Promise<LoadResult> {
  if (opts.cache) {
    try {
      return await load(paths, opts.cache);
    } catch (err) {
      // A finding needs a place in the text that only the parser knows: errors are the rare case, so parse everything.
      if (!(err instanceof PositionsNeeded)) throw err;
    }
  }
  return load(paths, undefined);
}

async function load(paths: readonly string[], cache: ParseCache | undefined): Promise<LoadResult> {
  const errors: ManifestError[] = [];
  const files = await manifestFiles(paths, errors);
  const parsed: ParsedObject[] = [];
  const skipped: Declared[] = [];
  const unreadable = new Set(errors.map((e) => e.file));
  // Read (and looked up in the cache) side by side, a batch at a time: one by one, a hundred files are mostly waits on
  // the thread pool; all at once, thousands would hold as many descriptors open.
  const texts = await inBatches(files, async (file) => {
    const text = unreadable.has(file) ? undefined : await readManifestFile(file, errors);
    return { file, text, hit: text === undefined ? undefined : await cache?.get(text) };
  });
  for (const { file, text, hit } of texts) {
    if (text === undefined) continue;
    const r = await parseText(text, file, cache, hit);
    if (r.errors.length) {
      errors.push(...r.errors);
      skipped.push(...r.declared);
    } else {
      parsed.push(...r.objects);
    }
  }
  const kept = checkAcrossFiles(parsed, skipped, errors);
  const order = new Map(files.map((f, i) => [f, i]));
  errors.sort((a, b) => (order.get(a.file) ?? -1) - (order.get(b.file) ?? -1) || a.line - b.line || a.col - b.col);
  return { objects: kept.map((p) => p.object), errors, files };
}

/** One file's objects and errors: from its cached parse (`hit`) when there is one, else through yaml.ts (then cached when clean). */
async function parseText(text: string, file: string, cache: ParseCache | undefined, hit: CachedItem[] | undefined): Promise<{ objects: ParsedObject[]; errors: ManifestError[]; declared: Declared[] }> {
  if (hit) return checkItems(hit.map(fromCache), file);
  const { parseFile } = await import('./yaml.js');
  const r = parseFile(text, file);
  if (cache && !r.errors.length) await cache.put(text, r.items.map(toCache));
  return r;
}

function toCache(item: SourceItem): CachedItem {
  return { value: item.value, base: item.base, ...item.at(item.base, 'value') };
}

/** A cached item knows one position, its own (a clean file needs no other). */
function fromCache(c: CachedItem): SourceItem {
  return {
    value: c.value,
    base: c.base,
    at(pointer: string, anchor: Anchor): Position {
      if (pointer === c.base && anchor === 'value') return { line: c.line, col: c.col };
      throw new PositionsNeeded(`the position of ${pointer} in a cached parse`);
    },
  };
}

export function formatManifestError(e: ManifestError): string {
  const where = e.line > 0 ? `${e.file}:${e.line}:${e.col}` : e.file;
  const at = e.pointer === '' ? '' : ` (at ${e.pointer})`;
  return `${where}: ${e.message}${at}${e.hint ? `\n  hint: ${e.hint}` : ''}`;
}

// ---- files

async function manifestFiles(paths: readonly string[], errors: ManifestError[]): Promise<string[]> {
  const files: string[] = [];
  const seen = new Set<string>();
  const add = async (file: string): Promise<void> => {
    const real = await realpath(file).catch(() => file);
    if (!seen.has(real)) {
      seen.add(real);
      files.push(file);
    }
  };
  const walk = async (dir: string, visited: Set<string>): Promise<void> => {
    let entries: string[];
    try {
      const real = await realpath(dir);
      if (visited.has(real)) return; // a symlink loop
      visited.add(real);
      entries = (await readdir(dir)).filter((n) => !isLeftover(n)).sort();
    } catch (err) {
      errors.push(ioError(dir, err));
      return;
    }
    // Stat side by side, then take the entries in name order.
    const stats = await inBatches(entries, (name) => stat(join(dir, name)).catch(() => undefined)); // a dangling symlink is no manifest
    for (const [i, name] of entries.entries()) {
      const path = join(dir, name);
      const st = stats[i];
      if (st?.isDirectory()) await walk(path, visited);
      else if (st?.isFile() && MANIFEST_FILE.test(name)) await add(path);
    }
  };
  for (const path of paths) {
    try {
      const st = await stat(path);
      if (st.isDirectory()) await walk(path, new Set());
      else await add(path);
    } catch (err) {
      errors.push(ioError(path, err));
      files.push(path);
    }
  }
  return files;
}

async function readManifestFile(file: string, errors: ManifestError[]): Promise<string | undefined> {
  try {
    const st = await stat(file);
    if (!st.isFile()) {
      errors.push({ code: 'IO', file, line: 0, col: 0, pointer: '', message: 'is not a regular file', hint: 'give manifest files or directories of them' });
      return undefined;
    }
    if (st.size > MAX_MANIFEST_FILE_BYTES) {
      errors.push({ code: 'IO', file, line: 0, col: 0, pointer: '', message: `is ${st.size} bytes, more than the ${MAX_MANIFEST_FILE_BYTES} a manifest file may have`, hint: 'split it, or check that it is a manifest' });
      return undefined;
    }
    return await readFile(file, 'utf8');
  } catch (err) {
    // Listed before it was read, so it is in `files` already.
    errors.push(ioError(file, err));
    return undefined;
  }
}

function ioError(file: string, err: unknown): ManifestError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const [message, hint] =
    code === 'ENOENT' ? ['no such file or directory', 'check the path given with -f']
    : code === 'EACCES' || code === 'EPERM' ? ['permission denied', 'make it readable by the user berth runs as']
    : code === 'ENOTDIR' ? ['a part of the path is not a directory', 'check the path given with -f']
    : [`cannot be read: ${err instanceof Error ? err.message : String(err)}`, 'check the file and its directory'];
  return { code: 'IO', file, line: 0, col: 0, pointer: '', message, hint };
}

// ---- across files

function checkAcrossFiles(parsed: ParsedObject[], skipped: Declared[], errors: ManifestError[]): ParsedObject[] {
  /** Why a name is not applied, by kind/name. */
  const dropped = new Map<string, string>();
  const keyOf = (kind: string, name: string): string => `${kind}/${name}`;
  for (const d of skipped) dropped.set(keyOf(d.kind, d.name), `its file ${d.file} has errors`);
  const where = (p: ParsedObject): string => `${p.object.source.file}:${p.at(joinPointer(p.base, 'metadata', 'name'), 'value').line}`;
  const report = (p: ParsedObject, code: ManifestErrorCode, pointer: string, message: string, hint: string): void => {
    const { line, col } = p.at(pointer, 'value');
    errors.push({ code, file: p.object.source.file, line, col, pointer, message, hint, object: { kind: p.object.kind, name: p.object.name } });
  };

  // Names, unique per kind.
  const byKey = new Map<string, ParsedObject[]>();
  for (const p of parsed) {
    const key = keyOf(p.object.kind, p.object.name);
    byKey.set(key, [...(byKey.get(key) ?? []), p]);
  }
  for (const [key, group] of byKey) {
    if (group.length < 2) continue;
    const first = group[0]!;
    for (const p of group.slice(1)) {
      report(p, 'DUPLICATE', joinPointer(p.base, 'metadata', 'name'), `${p.object.kind} ${JSON.stringify(p.object.name)} is defined twice: first at ${where(first)}`, `names are unique per kind across all manifests; rename or remove one (neither is applied until then)`);
    }
    dropped.set(key, `it is defined more than once (${group.map(where).join(', ')})`);
  }
  let alive = parsed.filter((p) => !dropped.has(keyOf(p.object.kind, p.object.name)));

  const containers = (): Map<string, ParsedObject> => new Map(alive.filter((p) => p.object.kind === 'Container').map((p) => [p.object.name, p]));
  const names = new Set(parsed.filter((p) => p.object.kind === 'Container').map((p) => p.object.name));
  const imageNames = new Set(parsed.filter((p) => p.object.kind === 'Image').map((p) => p.object.name));

  /** Drops containers whose dependencies are not applied, until none is left. */
  const dropBrokenDependencies = (): void => {
    for (let changed = true; changed; ) {
      changed = false;
      const live = containers();
      for (const p of live.values()) {
        const c = p.object as DesiredContainer;
        const missing = c.dependsOn.map((dep, i) => ({ dep, i })).filter(({ dep }) => !live.has(dep));
        if (!missing.length) continue;
        for (const { dep, i } of missing) {
          const why = dropped.get(keyOf('Container', dep));
          const message = why
            ? `depends on ${JSON.stringify(dep)}, which is not applied: ${why}`
            : `depends on ${JSON.stringify(dep)}, but there is no Container named ${JSON.stringify(dep)}`;
          const guess = suggest(dep, [...names]);
          const hint = why
            ? `fix ${JSON.stringify(dep)} first; until then ${JSON.stringify(c.name)} is not applied either`
            : imageNames.has(dep) ? `${JSON.stringify(dep)} is an Image; dependsOn names Containers`
            : guess ? `did you mean ${JSON.stringify(guess)}?`
            : `add a Container named ${JSON.stringify(dep)}, or remove it from dependsOn`;
          report(p, 'DEPENDENCY', joinPointer(p.base, 'spec', 'dependsOn', i), message, hint);
        }
        const first = missing[0]!.dep;
        dropped.set(keyOf('Container', c.name), `it depends on ${JSON.stringify(first)}, which ${dropped.has(keyOf('Container', first)) ? 'is not applied' : 'does not exist'}`);
        alive = alive.filter((a) => a !== p);
        changed = true;
      }
    }
  };

  dropBrokenDependencies();
  for (const cycle of dependencyCycles(containers())) {
    const [first, second] = [cycle[0]!, cycle[1]!];
    const c = first.object as DesiredContainer;
    const path = cycle.map((p) => p.object.name).join(' → ');
    report(first, 'CYCLE', joinPointer(first.base, 'spec', 'dependsOn', c.dependsOn.indexOf(second.object.name)), `dependency cycle: ${path}`, 'remove one of these dependsOn entries; none of them is applied until then');
    for (const p of cycle) dropped.set(keyOf('Container', p.object.name), `it is part of the dependency cycle ${path}`);
    alive = alive.filter((a) => !cycle.includes(a));
  }
  dropBrokenDependencies();
  return alive;
}

/**
 * Every dependency cycle, one per strongly connected component (Tarjan), as a
 * path from the member first in source order back to itself: [a, b, a].
 */
function dependencyCycles(containers: Map<string, ParsedObject>): ParsedObject[][] {
  const deps = (p: ParsedObject): string[] => (p.object as DesiredContainer).dependsOn.filter((d) => containers.has(d));
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const components: string[][] = [];
  const visit = (name: string): void => {
    index.set(name, index.size);
    low.set(name, index.get(name)!);
    stack.push(name);
    for (const d of deps(containers.get(name)!)) {
      if (!index.has(d)) {
        visit(d);
        low.set(name, Math.min(low.get(name)!, low.get(d)!));
      } else if (stack.includes(d)) {
        low.set(name, Math.min(low.get(name)!, index.get(d)!));
      }
    }
    if (low.get(name) === index.get(name)) {
      const component: string[] = [];
      for (let n = stack.pop()!; ; n = stack.pop()!) {
        component.push(n);
        if (n === name) break;
      }
      components.push(component);
    }
  };
  for (const name of containers.keys()) if (!index.has(name)) visit(name);

  const cycles: ParsedObject[][] = [];
  for (const component of components) {
    const members = new Set(component);
    const start = [...containers.keys()].find((n) => members.has(n))!;
    if (component.length === 1 && !deps(containers.get(start)!).includes(start)) continue;
    // A shortest way round from start, breadth first within the component.
    const previous = new Map<string, string>();
    const queue = [start];
    let last: string | undefined;
    while (queue.length && last === undefined) {
      const n = queue.shift()!;
      for (const d of deps(containers.get(n)!)) {
        if (!members.has(d)) continue;
        if (d === start) {
          last = n;
          break;
        }
        if (!previous.has(d)) {
          previous.set(d, n);
          queue.push(d);
        }
      }
    }
    const path = [start];
    for (let n = last!; n !== start; n = previous.get(n)!) path.splice(1, 0, n);
    path.push(start);
    cycles.push(path.map((n) => containers.get(n)!));
  }
  return cycles;
}
