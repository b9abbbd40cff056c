/**
 * Where one berth command's time goes, from a V8 CPU profile (`node
 * --cpu-prof`): every sample is charged to the innermost frame of its stack
 * that names a part (a dependency, a berth module, node's module loader),
 * so a native `open()` called from the runtime's state reads counts as
 * runtime, and yaml's lexer as manifest parsing. Samples are spread evenly
 * in time, so a part's share of samples is its share of the CPU time
 * profiled; `(idle)` is the main thread waiting (I/O, timers). A sample
 * counts for the time until the next one, but at most four intervals: a
 * longer gap is the thread not running (descheduled on a busy machine),
 * reported apart instead of charged to whatever ran before it.
 */
import { readFile } from 'node:fs/promises';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

/** The .cpuprofile file node writes: microsecond timestamps on the monotonic clock (as process.hrtime). */
export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface Part {
  part: string;
  ms: number;
  /** When its first and last samples were taken, ms after the profile started. */
  firstMs: number;
  lastMs: number;
}

export interface Hotspot {
  fn: string;
  where: string;
  ms: number;
}

export interface ProfileSummary {
  /** When the profiler started (µs, the monotonic clock of process.hrtime), to place it within the process's wall time. */
  startUs: number;
  /** From the profile's first sample to its last. */
  profiledMs: number;
  /** Time between samples beyond four intervals: the thread did not run. */
  gapsMs: number;
  parts: Part[];
  /** Functions with the most self time. */
  selfTop: Hotspot[];
  /** berth's own functions (src/) with the most time including what they call, within one synchronous stack. */
  berthTop: Hotspot[];
}

const MODULE_LOADING = 'module loading (resolve, read, compile, link)';

/** The part a frame names, or undefined to look further out. */
function partOf(f: CallFrame): string | undefined {
  const u = f.url;
  switch (f.functionName) {
    case '(garbage collector)':
      return 'GC';
    case '(idle)':
      return '(idle: waiting on I/O or timers)';
    case '(program)':
      return '(program: V8 and native work outside JS)';
  }
  if (u === '' && /^validate\d+$/.test(f.functionName)) return 'schema validate (ajv generated code)';
  if (u.includes('/node_modules/yaml/')) return 'manifest parse (yaml)';
  if (u.includes('/node_modules/ajv/dist/runtime/')) return 'schema validate (ajv generated code)';
  if (u.includes('/node_modules/ajv/') || u.includes('/node_modules/fast-uri/') || u.includes('/node_modules/fast-deep-equal/') || u.includes('/node_modules/json-schema-traverse/')) {
    return 'schema compile (ajv)';
  }
  if (u.includes('/node_modules/lmdb/') || u.includes('/node_modules/msgpackr') || u.includes('/node_modules/ordered-binary/')) return 'LMDB (lmdb-js)';
  if (u.includes('/node_modules/')) return `dependency ${/\/node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(u)?.[1] ?? '?'}`;
  const src = /\/dist\/src\/(.*)$/.exec(u)?.[1];
  if (src !== undefined) {
    const dir = src.includes('/') ? src.slice(0, src.indexOf('/')) : src;
    switch (dir) {
      case 'manifests':
        return 'berth manifests/ (load, desired state, hash)';
      case 'runtime':
        return 'berth runtime/ (state.json, exit files, /proc reads)';
      case 'containers':
        return 'berth containers/ (list, views)';
      case 'metadata':
      case 'lmdb':
        return 'berth metadata/ (records over LMDB)';
      case 'images':
        return 'berth images/ (inspect)';
      case 'reconcile':
        return 'berth reconcile/ (observe, plan)';
      case 'snapshots':
        return 'berth snapshots/';
      default:
        return `berth ${dir} (cli, system, shell)`;
    }
  }
  if (u.startsWith('node:internal/modules/')) return MODULE_LOADING;
  return undefined;
}

/** A frame's file, from node_modules/ or dist/ on. */
function shortUrl(url: string): string {
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) return url.slice(nm + 1);
  const dist = url.indexOf('/dist/');
  return dist >= 0 ? url.slice(dist + 1) : url;
}

/** Reads a profile and charges its samples to parts. */
export async function summarizeProfile(file: string, intervalUs: number, top = 12): Promise<ProfileSummary> {
  const p = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

  const parts = new Map<string, Part>();
  const self = new Map<string, Hotspot>();
  const berth = new Map<string, Hotspot>();
  const key = (f: CallFrame): { fn: string; where: string } => ({
    fn: f.functionName || '(anonymous or module body)',
    where: f.url ? `${shortUrl(f.url)}:${f.lineNumber + 1}` : '(native)',
  });
  const add = (m: Map<string, Hotspot>, f: CallFrame, ms: number): void => {
    const k = key(f);
    const id = `${k.fn} ${k.where}`;
    const h = m.get(id) ?? { ...k, ms: 0 };
    h.ms += ms;
    m.set(id, h);
  };

  let t = p.startTime;
  let gapsMs = 0;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i] ?? 0;
    // A sample's duration: until the next one (the last one: nothing is known after it).
    const untilNext = (p.timeDeltas[i + 1] ?? 0) / 1000;
    const ms = Math.min(untilNext, (4 * intervalUs) / 1000);
    gapsMs += untilNext - ms;
    const leaf = byId.get(p.samples[i]!);
    if (!leaf) continue;
    add(self, leaf.callFrame, ms);
    let part: string | undefined;
    const seen = new Set<string>();
    for (let n: ProfileNode | undefined = leaf; n; n = byId.get(parent.get(n.id) ?? -1)) {
      part ??= partOf(n.callFrame);
      if (/\/dist\/src\//.test(n.callFrame.url)) {
        const k = `${n.callFrame.functionName} ${n.callFrame.url}:${n.callFrame.lineNumber}`;
        if (!seen.has(k)) add(berth, n.callFrame, ms);
        seen.add(k);
      }
    }
    part ??= 'node internals (bootstrap, fs, streams; no caller on the stack)';
    const at = (t - p.startTime) / 1000;
    const e = parts.get(part) ?? { part, ms: 0, firstMs: at, lastMs: at };
    e.ms += ms;
    e.lastMs = at;
    parts.set(part, e);
  }
  const sorted = <T extends { ms: number }>(m: Map<string, T>): T[] => [...m.values()].sort((a, b) => b.ms - a.ms);
  return {
    startUs: p.startTime,
    profiledMs: (p.endTime - p.startTime) / 1000,
    gapsMs,
    parts: sorted(parts),
    selfTop: sorted(self).slice(0, top),
    berthTop: sorted(berth).slice(0, top),
  };
}
