/**
 * A canonical description of a directory tree, for comparing root
 * filesystems entry by entry (berth's unpack, berth's snapshot views and
 * containerd's overlay mounts): type, mode with special bits, uid:gid, size,
 * sha256 of content, symlink target, device numbers, hardlink groups (paths
 * sharing an inode), every xattr, and mtimes (ns) of everything but
 * directories, whose mtimes a runtime touches.
 *
 * xattrs are read with llistxattr/lgetxattr through koffi (Node has no xattr
 * calls), so nothing here depends on berth's own code or on Debian's attr.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import koffi from 'koffi';

export type TreeEntryType = 'file' | 'dir' | 'symlink' | 'fifo' | 'char' | 'block' | 'socket';

export interface TreeEntry {
  /** Relative to the root, "/"-separated; the root itself is ".". */
  path: string;
  type: TreeEntryType;
  /** Permission and special bits (07777). */
  mode: number;
  uid: number;
  gid: number;
  /** Regular files only. */
  size?: number;
  sha256?: string;
  /** Symlinks only. */
  target?: string;
  /** Devices only: "major:minor". */
  rdev?: string;
  /** Non-directories only: mtime in nanoseconds since the epoch, as a decimal string. */
  mtimeNs?: string;
  /** Regular files with other names in the tree for the same inode: all of them, sorted (this one included). */
  links?: string[];
  /** name → value; printable values as text, others as "hex:…". */
  xattrs: Record<string, string>;
}

export interface DescribeOptions {
  /** Hash file content (default true). */
  hash?: boolean;
  /** Read xattrs (default true). */
  xattrs?: boolean;
}

// ---- xattrs through libc ----

interface XattrCalls {
  list(path: string): string[];
  get(path: string, name: string): Buffer;
}

let xattrCalls: XattrCalls | undefined;

function xattr(): XattrCalls {
  if (xattrCalls) return xattrCalls;
  const libc = koffi.load('libc.so.6');
  const llistxattr = libc.func('intptr_t llistxattr(const char *path, _Out_ uint8_t *list, size_t size)');
  const lgetxattr = libc.func('intptr_t lgetxattr(const char *path, const char *name, _Out_ uint8_t *value, size_t size)');
  const ENODATA = 61;
  const ERANGE = 34;
  const ENOTSUP = 95;
  // Ask for the size first, then read; a value that grew in between (ERANGE) is read again.
  const sized = (what: string, call: (buf: Buffer | null, size: number) => number): Buffer | undefined => {
    for (;;) {
      const n = call(null, 0);
      if (n < 0) {
        const errno = koffi.errno();
        if (errno === ENODATA || errno === ENOTSUP) return undefined;
        throw new Error(`${what}: errno ${errno}`);
      }
      const buf = Buffer.alloc(n);
      const m = n === 0 ? 0 : call(buf, n);
      if (m < 0 && koffi.errno() === ERANGE) continue;
      if (m < 0) throw new Error(`${what}: errno ${koffi.errno()}`);
      return buf.subarray(0, m);
    }
  };
  xattrCalls = {
    list: (path) => {
      const raw = sized(`llistxattr ${path}`, (buf, size) => llistxattr(path, buf, size) as number);
      return raw ? raw.toString('utf8').split('\0').filter(Boolean).sort() : [];
    },
    get: (path, name) => sized(`lgetxattr ${path} ${name}`, (buf, size) => lgetxattr(path, name, buf, size) as number) ?? Buffer.alloc(0),
  };
  return xattrCalls;
}

function xattrValue(v: Buffer): string {
  const printable = v.every((b) => b >= 0x20 && b < 0x7f);
  return printable ? v.toString('latin1') : `hex:${v.toString('hex')}`;
}

/** Every xattr of `path` (not following a symlink). */
export function readXattrs(path: string): Record<string, string> {
  const x = xattr();
  const out: Record<string, string> = {};
  for (const name of x.list(path)) out[name] = xattrValue(x.get(path, name));
  return out;
}

// ---- walking ----

function typeOf(st: import('node:fs').BigIntStats): TreeEntryType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  return 'socket';
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(path), h);
  return `sha256:${h.digest('hex')}`;
}

/** Linux's dev_t encoding (glibc's gnu_dev_major/minor). */
function devNumbers(rdev: bigint): string {
  const major = ((rdev & 0xfff00n) >> 8n) | ((rdev & 0xfffff00000000000n) >> 32n);
  const minor = (rdev & 0xffn) | ((rdev & 0xffffff00000n) >> 12n);
  return `${major}:${minor}`;
}

/** Describes every entry under `root` (the root included, as "."), sorted by path. */
export async function describeTree(root: string, opts: DescribeOptions = {}): Promise<TreeEntry[]> {
  const hash = opts.hash ?? true;
  const withXattrs = opts.xattrs ?? true;
  const out: TreeEntry[] = [];
  const inodes = new Map<string, TreeEntry[]>();
  const walk = async (rel: string): Promise<void> => {
    const abs = rel === '.' ? root : join(root, rel);
    const st = await lstat(abs, { bigint: true });
    const type = typeOf(st);
    const e: TreeEntry = {
      path: rel,
      type,
      mode: Number(st.mode & 0o7777n),
      uid: Number(st.uid),
      gid: Number(st.gid),
      xattrs: withXattrs ? readXattrs(abs) : {},
    };
    if (type !== 'dir') e.mtimeNs = String(st.mtimeNs);
    if (type === 'file') {
      e.size = Number(st.size);
      if (hash) e.sha256 = await sha256File(abs);
      const key = `${st.dev}:${st.ino}`;
      const group = inodes.get(key);
      if (group) group.push(e);
      else inodes.set(key, [e]);
    }
    if (type === 'symlink') e.target = await readlink(abs);
    if (type === 'char' || type === 'block') e.rdev = devNumbers(st.rdev);
    out.push(e);
    if (type === 'dir') {
      const names = (await readdir(abs)).sort();
      for (const n of names) await walk(rel === '.' ? n : `${rel}/${n}`);
    }
  };
  await walk('.');
  for (const group of inodes.values()) {
    if (group.length < 2) continue;
    const paths = group.map((g) => g.path).sort();
    for (const g of group) g.links = paths;
  }
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

// ---- comparing ----

const FIELDS = ['type', 'mode', 'uid', 'gid', 'size', 'sha256', 'target', 'rdev', 'mtimeNs', 'links', 'xattrs'] as const;
type Field = (typeof FIELDS)[number];

export interface CompareOptions {
  /** Fields not compared (e.g. 'mtimeNs', or 'mode' of the root). */
  ignore?: Field[];
  /** Paths whose entries are not compared at all. */
  skip?: (path: string) => boolean;
}

function show(field: Field, v: unknown): string {
  if (v === undefined) return '-';
  if (field === 'mode') return (v as number).toString(8).padStart(4, '0');
  if (field === 'mtimeNs') {
    const ns = BigInt(v as string);
    const ms = Number(ns / 1_000_000n);
    return `${v} (${Number.isFinite(ms) ? new Date(ms).toISOString() : '?'})`;
  }
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/** One line per entry, for logs: "path type mode uid:gid ...". */
export function formatEntry(e: TreeEntry): string {
  const parts = [e.path, e.type, show('mode', e.mode), `${e.uid}:${e.gid}`];
  if (e.size !== undefined) parts.push(`size=${e.size}`);
  if (e.sha256) parts.push(e.sha256.slice(0, 19));
  if (e.target !== undefined) parts.push(`-> ${JSON.stringify(e.target)}`);
  if (e.rdev) parts.push(`dev=${e.rdev}`);
  if (e.links) parts.push(`links=${JSON.stringify(e.links)}`);
  if (Object.keys(e.xattrs).length) parts.push(`xattrs=${JSON.stringify(e.xattrs)}`);
  if (e.mtimeNs) parts.push(`mtime=${show('mtimeNs', e.mtimeNs)}`);
  return parts.join(' ');
}

/**
 * The differences between `expected` and `actual`, one readable line each
 * (empty when they match): entries only on one side, then fields that differ.
 */
export function diffTrees(expected: TreeEntry[], actual: TreeEntry[], labels: [string, string], opts: CompareOptions = {}): string[] {
  const ignore = new Set(opts.ignore ?? []);
  const skip = opts.skip ?? (() => false);
  const byPath = (es: TreeEntry[]): Map<string, TreeEntry> => new Map(es.filter((e) => !skip(e.path)).map((e) => [e.path, e]));
  const a = byPath(expected);
  const b = byPath(actual);
  const [la, lb] = labels;
  const out: string[] = [];
  for (const [p, e] of a) if (!b.has(p)) out.push(`only in ${la}: ${formatEntry(e)}`);
  for (const [p, e] of b) if (!a.has(p)) out.push(`only in ${lb}: ${formatEntry(e)}`);
  for (const [p, ea] of a) {
    const eb = b.get(p);
    if (!eb) continue;
    for (const f of FIELDS) {
      if (ignore.has(f)) continue;
      const va = JSON.stringify(ea[f]);
      const vb = JSON.stringify(eb[f]);
      if (va !== vb) out.push(`${p}: ${f} ${la}=${show(f, ea[f])} ${lb}=${show(f, eb[f])}`);
    }
  }
  return out;
}

/** Entries no merged view may show: overlay whiteouts (char 0:0), `.wh.` names, overlay's private xattrs. */
export function overlayLeaks(entries: TreeEntry[]): string[] {
  const out: string[] = [];
  for (const e of entries) {
    const base = e.path.split('/').pop() ?? '';
    if (e.type === 'char' && e.rdev === '0:0') out.push(`${e.path}: an overlay whiteout device (char 0:0)`);
    if (base.startsWith('.wh.')) out.push(`${e.path}: a whiteout name`);
    for (const name of Object.keys(e.xattrs)) {
      if (name.startsWith('trusted.overlay.') || name.startsWith('user.overlay.')) out.push(`${e.path}: overlay xattr ${name}`);
    }
  }
  return out;
}
