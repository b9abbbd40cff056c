/**
 * Reads the relative imports of berth's sources and checks them against the
 * layer table of DESIGN.md. Pure over an in-memory tree (path → text) so the
 * checker can be tested on fake trees; readSourceTree loads the real one.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, posix, relative, sep } from 'node:path';

/** Source files keyed by repository-relative POSIX path ("src/oci/digest.ts"). */
export type SourceTree = ReadonlyMap<string, string>;

export interface Violation {
  /** The file that breaks the rule, with line: "src/content/local.ts:3". */
  file: string;
  /** The import specifier, or the token, involved. */
  subject: string;
  rule: 'upward-import' | 'sibling-import' | 'outside-src' | 'unresolved-import' | 'cycle' | 'unknown-module' | 'process-console';
  message: string;
}

export interface ModuleInfo {
  /** Folder name, or file name without .ts for top-level files ("errors", "system", "main"). */
  module: string;
  layer: number;
}

/** DESIGN.md's layer table. A folder src/<name>/ or a file src/<name>.ts. */
export const LAYERS: Readonly<Record<string, number>> = {
  oci: 0,
  errors: 0,
  log: 0,
  events: 0,
  // System calls Node lacks (mknod, xattrs, syncfs): below the adapters so each may use them.
  linux: 0.5,
  // Opening an LMDB environment durably, and its errors: shared by metadata/ and snapshots/.
  lmdb: 0.5,
  // Locks between berth processes (flock, from linux/): the state's one writer, one operation per container.
  lock: 0.75,
  content: 1,
  metadata: 1,
  snapshots: 1,
  mount: 1,
  archive: 1,
  remotes: 1,
  runtime: 1,
  manifests: 1,
  images: 2,
  containers: 2,
  gc: 2,
  reconcile: 3,
  system: 4,
  cli: 5,
  api: 5,
  main: 5,
  bin: 5,
};

/** Which of LAYERS are folders (the rest are single files directly under src/). */
const FOLDERS = new Set(['oci', 'linux', 'lmdb', 'lock', 'content', 'metadata', 'snapshots', 'mount', 'archive', 'remotes', 'runtime', 'manifests', 'images', 'containers', 'gc', 'reconcile', 'cli', 'api']);

/**
 * Same-layer imports the table allows besides layer 0's: main.ts is the
 * entry point that hands argv to cli/, and cli/ both serves (daemon) and
 * calls (status, events) the API.
 */
export const SAME_LAYER_ALLOWED: ReadonlyArray<readonly [from: string, to: string]> = [
  ['main', 'cli'],
  ['main', 'api'],
  ['cli', 'api'],
];

/** The only `process` use allowed below layer 5: hostPlatform's default parameters. */
const PROCESS_EXCEPTIONS: Readonly<Record<string, readonly string[]>> = {
  'src/oci/platform.ts': ['process.platform', 'process.arch'],
};

export function moduleOf(path: string): ModuleInfo | undefined {
  const parts = path.split('/');
  if (parts[0] !== 'src' || parts.length < 2) return undefined;
  const name = parts.length === 2 ? parts[1]!.replace(/\.[cm]?ts$/, '') : parts[1]!;
  const isFolder = parts.length > 2;
  const layer = LAYERS[name];
  if (layer === undefined || FOLDERS.has(name) !== isFolder) return undefined;
  return { module: name, layer };
}

/** Loads every .ts file under root/src as a SourceTree keyed "src/…". */
export function readSourceTree(root: string): Map<string, string> {
  const tree = new Map<string, string>();
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.isFile() && entry.name.endsWith('.ts')) tree.set(relative(root, full).split(sep).join('/'), readFileSync(full, 'utf8'));
    }
  };
  walk(join(root, 'src'));
  return tree;
}

/**
 * The source with comments, and the contents of string, template and regex
 * literals, replaced by spaces (newlines kept), so offsets and line numbers
 * match the original. `${…}` inside templates stays code.
 */
export function maskSource(text: string): string {
  const out = text.split('');
  const blank = (from: number, to: number): void => {
    for (let k = from; k < to; k++) if (out[k] !== '\n') out[k] = ' ';
  };
  // Brace depth at which each open template's `${` started; code runs while non-empty on top.
  const templates: number[] = [];
  let depth = 0;
  let i = 0;
  let lastSignificant = ''; // last non-space code token character, for regex-vs-division
  let lastWord = '';

  const scanTemplate = (): void => {
    // at: inside a template literal body; stops after the closing ` or at "${".
    const start = i;
    while (i < text.length) {
      const ch = text[i]!;
      if (ch === '\\') i += 2;
      else if (ch === '`') {
        blank(start, i);
        i++;
        lastSignificant = '`';
        return;
      } else if (ch === '$' && text[i + 1] === '{') {
        blank(start, i);
        i += 2;
        templates.push(depth);
        depth++;
        lastSignificant = '{';
        return;
      } else i++;
    }
    blank(start, i);
  };

  while (i < text.length) {
    const ch = text[i]!;
    const next = text[i + 1];
    if (ch === '/' && next === '/') {
      const end = text.indexOf('\n', i);
      const stop = end < 0 ? text.length : end;
      blank(i, stop);
      i = stop;
    } else if (ch === '/' && next === '*') {
      const end = text.indexOf('*/', i + 2);
      const stop = end < 0 ? text.length : end + 2;
      blank(i, stop);
      i = stop;
    } else if (ch === '"' || ch === "'") {
      let j = i + 1;
      while (j < text.length && text[j] !== ch && text[j] !== '\n') j += text[j] === '\\' ? 2 : 1;
      blank(i + 1, Math.min(j, text.length));
      i = j + 1;
      lastSignificant = ch;
      lastWord = '';
    } else if (ch === '`') {
      i++;
      scanTemplate();
      lastWord = '';
    } else if (ch === '/' && startsRegex(lastSignificant, lastWord)) {
      let j = i + 1;
      let inClass = false;
      while (j < text.length && text[j] !== '\n') {
        const c = text[j]!;
        if (c === '\\') j++;
        else if (c === '[') inClass = true;
        else if (c === ']') inClass = false;
        else if (c === '/' && !inClass) break;
        j++;
      }
      blank(i + 1, Math.min(j, text.length));
      i = j + 1;
      lastSignificant = '/';
      lastWord = '';
    } else if (ch === '{') {
      depth++;
      i++;
      lastSignificant = ch;
      lastWord = '';
    } else if (ch === '}') {
      depth--;
      i++;
      if (templates.length > 0 && templates[templates.length - 1] === depth) {
        templates.pop();
        scanTemplate();
      } else lastSignificant = ch;
      lastWord = '';
    } else if (/[\w$]/.test(ch)) {
      let j = i;
      while (j < text.length && /[\w$]/.test(text[j]!)) j++;
      lastWord = text.slice(i, j);
      lastSignificant = text[j - 1]!;
      i = j;
    } else {
      if (!/\s/.test(ch)) {
        lastSignificant = ch;
        lastWord = '';
      }
      i++;
    }
  }
  return out.join('');
}

const REGEX_AFTER_WORDS = new Set(['return', 'typeof', 'instanceof', 'in', 'of', 'new', 'delete', 'void', 'throw', 'case', 'do', 'else', 'yield', 'await']);

/** A "/" starts a regex literal unless it follows something that ends an expression. */
function startsRegex(lastSignificant: string, lastWord: string): boolean {
  if (lastWord !== '') return REGEX_AFTER_WORDS.has(lastWord);
  return !/[\w$)\]}'"`]/.test(lastSignificant);
}

export interface ImportRef {
  specifier: string;
  line: number;
}

/** Specifiers of static imports, re-exports (`export … from`) and dynamic `import('…')`, type-only ones included. */
export function importsOf(text: string): ImportRef[] {
  const masked = maskSource(text);
  const patterns = [
    /\b(?:import|export)\s+(?:type\s+)?[\w\s{},*$]*?\bfrom\s*(['"])/g,
    /\bimport\s*(['"])/g,
    /\bimport\s*\(\s*(['"])/g,
  ];
  const found = new Map<number, ImportRef>();
  for (const re of patterns) {
    for (const m of masked.matchAll(re)) {
      const open = m.index + m[0].length; // first character inside the quotes
      const close = text.indexOf(m[1]!, open);
      if (close < 0) continue;
      found.set(open, { specifier: text.slice(open, close), line: lineAt(text, open) });
    }
  }
  return [...found.entries()].sort((a, b) => a[0] - b[0]).map(([, ref]) => ref);
}

function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let k = 0; k < offset; k++) if (text.charCodeAt(k) === 10) line++;
  return line;
}

/**
 * Resolves a relative specifier from `from` to a tree path: ".js" maps to its
 * ".ts" source, and a folder (or "folder/index.js") to its index.ts. Returns
 * the candidate path even when no such file exists, so callers can report it.
 */
export function resolveImport(tree: SourceTree, from: string, specifier: string): { path: string; exists: boolean } {
  const base = posix.normalize(posix.join(posix.dirname(from), specifier));
  const candidates = [
    base.replace(/\.js$/, '.ts'),
    base.replace(/\.mjs$/, '.mts'),
    base,
    `${base}.ts`,
    `${base.replace(/\/$/, '')}/index.ts`,
  ];
  for (const c of candidates) if (tree.has(c)) return { path: c, exists: true };
  return { path: candidates[0]!, exists: false };
}

/** Every rule of DESIGN.md's layer table, checked over a tree; empty when the tree conforms. */
export function checkArchitecture(tree: SourceTree): Violation[] {
  const violations: Violation[] = [];
  const graph = new Map<string, Array<{ to: string; where: string; specifier: string }>>();

  for (const [file, text] of tree) {
    if (!file.startsWith('src/')) continue;
    const from = moduleOf(file);
    if (!from) {
      violations.push({
        file,
        subject: file,
        rule: 'unknown-module',
        message: `${file} belongs to no module of DESIGN.md's layer table; add its module to the table (and to LAYERS in test/helpers/imports.ts) or move the file`,
      });
    }
    const edges: Array<{ to: string; where: string; specifier: string }> = [];
    graph.set(file, edges);

    for (const { specifier, line } of importsOf(text)) {
      const where = `${file}:${line}`;
      if (/^(node:)?(process|console)$/.test(specifier) && from?.layer !== 5) {
        violations.push({ file: where, subject: specifier, rule: 'process-console', message: `${where} imports "${specifier}": only layer 5 (cli/, api/, main.ts) may use process and console` });
      }
      if (!specifier.startsWith('.')) continue;
      const target = resolveImport(tree, file, specifier);
      if (!target.path.startsWith('src/')) {
        if (/\.[mc]?ts$/.test(target.path)) {
          violations.push({ file: where, subject: specifier, rule: 'outside-src', message: `${where} imports "${specifier}" (${target.path}): code under src/ must not import code outside src/` });
        }
        continue;
      }
      if (!target.exists) {
        violations.push({ file: where, subject: specifier, rule: 'unresolved-import', message: `${where} imports "${specifier}", but ${target.path} does not exist` });
        continue;
      }
      edges.push({ to: target.path, where, specifier });
      const to = moduleOf(target.path);
      if (!from || !to || from.module === to.module) continue;
      if (from.layer === 0 && to.layer === 0) continue;
      if (to.layer < from.layer) continue;
      if (to.layer === from.layer && SAME_LAYER_ALLOWED.some(([a, b]) => a === from.module && b === to.module)) continue;
      const rule = to.layer > from.layer ? 'upward-import' : 'sibling-import';
      const why =
        rule === 'upward-import'
          ? `${from.module} (layer ${from.layer}) must not import ${to.module} (layer ${to.layer}); imports point down the layer table`
          : `${from.module} must not import ${to.module}, a sibling module of the same layer ${from.layer}`;
      violations.push({ file: where, subject: specifier, rule, message: `${where} imports "${specifier}" (${target.path}): ${why}` });
    }

    violations.push(...processAndConsoleUses(file, text, from));
  }

  for (const cycle of findCycles(graph)) {
    const first = cycle[0]!;
    const path = [...cycle.map((c) => c.from), first.from].join(' → ');
    violations.push({
      file: first.where,
      subject: first.specifier,
      rule: 'cycle',
      message: `${first.where} imports "${first.specifier}", which is part of an import cycle: ${path}`,
    });
  }
  return violations;
}

/** `process.` and `console.` in code (not comments or strings) outside layer 5. */
function processAndConsoleUses(file: string, text: string, from: ModuleInfo | undefined): Violation[] {
  if (from?.layer === 5) return [];
  const allowed = PROCESS_EXCEPTIONS[file] ?? [];
  const masked = maskSource(text);
  const out: Violation[] = [];
  for (const m of masked.matchAll(/(?<![\w$.])(?:globalThis\s*\.\s*)?(process|console)\s*(?:\??\.\s*([\w$]+)|\[)/g)) {
    const token = m[2] ? `${m[1]}.${m[2]}` : `${m[1]}[`;
    if (allowed.includes(token)) continue;
    const where = `${file}:${lineAt(text, m.index)}`;
    out.push({
      file: where,
      subject: token,
      rule: 'process-console',
      message: `${where} uses ${token}: only layer 5 (cli/, api/, main.ts) may use process and console; library code takes values as parameters and logs through a Logger`,
    });
  }
  return out;
}

interface Edge {
  from: string;
  where: string;
  specifier: string;
}

/** One cycle per strongly connected component of more than one file (or a file importing itself), as the edges around it. */
function findCycles(graph: ReadonlyMap<string, ReadonlyArray<{ to: string; where: string; specifier: string }>>): Edge[][] {
  // Tarjan's algorithm, then a path around each component.
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];

  const visit = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter);
    counter++;
    stack.push(v);
    onStack.add(v);
    for (const { to } of graph.get(v) ?? []) {
      if (!index.has(to)) {
        visit(to);
        low.set(v, Math.min(low.get(v)!, low.get(to)!));
      } else if (onStack.has(to)) low.set(v, Math.min(low.get(v)!, index.get(to)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      components.push(component);
    }
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) visit(v);

  const cycles: Edge[][] = [];
  for (const component of components) {
    const members = new Set(component);
    const start = [...component].sort()[0]!;
    const selfLoop = (graph.get(start) ?? []).find((e) => e.to === start);
    if (component.length === 1 && !selfLoop) continue;
    if (selfLoop) {
      cycles.push([{ from: start, where: selfLoop.where, specifier: selfLoop.specifier }]);
      continue;
    }
    // Breadth-first from start back to start, staying inside the component: the shortest cycle through it.
    const prev = new Map<string, Edge>();
    const queue = [start];
    let closing: Edge | undefined;
    while (queue.length > 0 && !closing) {
      const v = queue.shift()!;
      for (const e of graph.get(v) ?? []) {
        if (!members.has(e.to)) continue;
        const edge = { from: v, where: e.where, specifier: e.specifier };
        if (e.to === start) {
          closing = edge;
          break;
        }
        if (!prev.has(e.to)) {
          prev.set(e.to, edge);
          queue.push(e.to);
        }
      }
    }
    if (!closing) continue;
    const edges: Edge[] = [closing];
    while (edges[0]!.from !== start) edges.unshift(prev.get(edges[0]!.from)!);
    cycles.push(edges);
  }
  return cycles;
}
