/**
 * Test helpers for archive/: a tar writer that can write any header, hostile
 * ones included (tar-stream's packer normalises names and writes PAX values
 * as UTF-8 text, so it cannot make binary xattrs or `../` names), a snapshot
 * of a directory tree for before/after comparisons, and a sandbox with a
 * root next to a sentinel directory that must never change.
 */
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { execFileSync } from 'node:child_process';
import { applyLayer, type ApplyResult } from '../../../src/archive/index.js';
import { lgetxattr, llistxattr } from '../../../src/linux/index.js';
import { tempDir } from '../../helpers/tmp.js';

export interface Entry {
  name: string;
  type?: 'file' | 'dir' | 'symlink' | 'link' | 'char' | 'block' | 'fifo';
  /** A raw typeflag, overriding `type`. */
  typeflag?: string;
  content?: Buffer | string;
  mode?: number;
  uid?: number;
  gid?: number;
  /** Whole seconds (PAX mtime and atime records go in `pax`). */
  mtime?: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  xattrs?: Record<string, Buffer | string>;
  /** More PAX records for this entry. */
  pax?: Record<string, Buffer | string>;
  /** Long names as GNU 'L'/'K' headers instead of PAX. */
  gnu?: boolean;
}

export const MTIME = 1704067200; // 2024-01-01T00:00:00Z

const FLAGS: Record<NonNullable<Entry['type']>, string> = { file: '0', dir: '5', symlink: '2', link: '1', char: '3', block: '4', fifo: '6' };

function octal(buf: Buffer, off: number, len: number, value: number): void {
  buf.write(value.toString(8).padStart(len - 1, '0') + '\0', off, len, 'latin1');
}

function header(name: Buffer, flag: string, size: number, e: Entry, link: Buffer): Buffer {
  const b = Buffer.alloc(512);
  name.copy(b, 0, 0, Math.min(100, name.length));
  octal(b, 100, 8, e.mode ?? (flag === '5' ? 0o755 : flag === '2' ? 0o777 : 0o644));
  octal(b, 108, 8, e.uid ?? 0);
  octal(b, 116, 8, e.gid ?? 0);
  octal(b, 124, 12, size);
  octal(b, 136, 12, Math.floor(e.mtime ?? MTIME));
  b[156] = flag.charCodeAt(0);
  link.copy(b, 157, 0, Math.min(100, link.length));
  b.write('ustar\x0000', 257, 'latin1');
  octal(b, 329, 8, e.devmajor ?? 0);
  octal(b, 337, 8, e.devminor ?? 0);
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const x of b) sum += x;
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1');
  return b;
}

function padded(data: Buffer): Buffer {
  const pad = (512 - (data.length % 512)) % 512;
  return pad ? Buffer.concat([data, Buffer.alloc(pad)]) : data;
}

/** One PAX record "%d %s=%s\n", its length counting itself. */
function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

function entryBlocks(e: Entry): Buffer[] {
  const flag = e.typeflag ?? FLAGS[e.type ?? 'file'];
  const name = Buffer.from(e.name);
  const link = Buffer.from(e.linkname ?? '');
  const content = Buffer.from(e.content ?? '');
  const out: Buffer[] = [];
  const pax: Buffer[] = [];
  if (name.length > 100) {
    if (e.gnu) out.push(header(Buffer.from('././@LongLink'), 'L', name.length + 1, { name: '' }, Buffer.alloc(0)), padded(Buffer.concat([name, Buffer.alloc(1)])));
    else pax.push(paxRecord('path', name));
  }
  if (link.length > 100) {
    if (e.gnu) out.push(header(Buffer.from('././@LongLink'), 'K', link.length + 1, { name: '' }, Buffer.alloc(0)), padded(Buffer.concat([link, Buffer.alloc(1)])));
    else pax.push(paxRecord('linkpath', link));
  }
  for (const [k, v] of Object.entries(e.xattrs ?? {})) pax.push(paxRecord(`SCHILY.xattr.${k}`, Buffer.from(v)));
  for (const [k, v] of Object.entries(e.pax ?? {})) pax.push(paxRecord(k, Buffer.from(v)));
  if (pax.length) {
    const data = Buffer.concat(pax);
    out.push(header(Buffer.from('PaxHeaders/x'), 'x', data.length, { name: '' }, Buffer.alloc(0)), padded(data));
  }
  out.push(header(name, flag, content.length, e, link));
  if (content.length) out.push(padded(content));
  return out;
}

/** A tar of `entries` in order, ending with the two zero blocks (unless `end` is false). */
export function tar(entries: Entry[], opts: { end?: boolean } = {}): Buffer {
  const parts = entries.flatMap(entryBlocks);
  if (opts.end !== false) parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

export function sha256hex(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

export function gzip(b: Buffer): Buffer {
  return gzipSync(b);
}

export function zstd(b: Buffer): Buffer {
  return execFileSync('zstd', ['-q', '-c', '-3'], { input: b, maxBuffer: 1 << 30 });
}

/** A readable of `data` in pieces of `chunk` bytes, so headers and contents straddle chunk boundaries. */
export function chunked(data: Buffer, chunk = 7919): Readable {
  const pieces: Buffer[] = [];
  for (let i = 0; i < data.length; i += chunk) pieces.push(data.subarray(i, i + chunk));
  return Readable.from(pieces, { objectMode: false });
}

export interface Node {
  type: 'file' | 'dir' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket';
  mode: number;
  uid: number;
  gid: number;
  size: number;
  sha256?: string;
  target?: string;
  rdev?: number;
  ino: number;
  nlink: number;
  /** Nanoseconds, as a decimal string (JSON has no bigint). */
  mtimeNs: string;
  xattrs: Record<string, string>;
}

/** Every entry under `dir` (not following symlinks), by path relative to it; xattr values in hex. */
export function snapshot(dir: string): Map<string, Node> {
  const out = new Map<string, Node>();
  const walk = (rel: string): void => {
    const abs = rel ? join(dir, rel) : dir;
    const st = lstatSync(abs, { bigint: true });
    const type = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isCharacterDevice() ? 'char' : st.isBlockDevice() ? 'block' : st.isFIFO() ? 'fifo' : 'socket';
    const xattrs: Record<string, string> = {};
    for (const name of llistxattr(abs).sort()) xattrs[name] = lgetxattr(abs, name)?.toString('hex') ?? '';
    const node: Node = { type, mode: Number(st.mode & 0o7777n), uid: Number(st.uid), gid: Number(st.gid), size: type === 'file' ? Number(st.size) : 0, ino: Number(st.ino), nlink: Number(st.nlink), mtimeNs: String(st.mtimeNs), xattrs };
    if (type === 'file') node.sha256 = sha256hex(readFileSync(abs));
    if (type === 'symlink') node.target = readlinkSync(abs);
    if (type === 'char' || type === 'block') node.rdev = Number(st.rdev);
    out.set(rel || '.', node);
    if (type === 'dir') for (const name of readdirSync(abs).sort()) walk(rel ? `${rel}/${name}` : name);
  };
  walk('');
  return out;
}

/** Snapshot without the fields that change whenever a directory is visited or written (for sentinel comparisons keep them). */
export function shape(tree: Map<string, Node>): Record<string, Omit<Node, 'ino' | 'mtimeNs'>> {
  const out: Record<string, Omit<Node, 'ino' | 'mtimeNs'>> = {};
  for (const [k, { ino: _i, mtimeNs: _m, ...rest }] of tree) out[k] = rest;
  return out;
}

export interface Sandbox {
  /** <tmp>/root: where layers are applied. */
  root: string;
  /** <tmp>/outside: a sentinel next to the root; also reachable as /outside from the host. */
  outside: string;
  dir: string;
  apply(layer: Buffer, opts?: { compression?: 'none' | 'gzip' | 'zstd' }): Promise<ApplyResult>;
  /** Fails the test if anything under the sandbox but outside root changed since creation. */
  assertOutsideUntouched(): void;
  cleanup(): Promise<void>;
}

/**
 * A temporary directory with `root/` (empty) and `outside/` (a sentinel with a
 * file, a subdirectory and a `passwd`), whose state, with every inode number
 * and mtime, is recorded at creation.
 */
export async function sandbox(prefix = 'berth-archive'): Promise<Sandbox> {
  const t = await tempDir(prefix);
  const root = join(t.path, 'root');
  const outside = join(t.path, 'outside');
  mkdirSync(root);
  mkdirSync(join(outside, 'sub'), { recursive: true });
  writeFileSync(join(outside, 'passwd'), 'root:x:0:0::/root:/bin/sh\n');
  writeFileSync(join(outside, 'sub', 'keep'), 'keep me\n');
  const before = outsideState(t.path);
  return {
    root,
    outside,
    dir: t.path,
    apply: (layer, opts = {}) => applyLayer(root, chunked(layer), { compression: opts.compression ?? 'none' }),
    assertOutsideUntouched() {
      const after = outsideState(t.path);
      if (JSON.stringify(after) !== JSON.stringify(before)) {
        throw new Error(`something outside the root changed:\nbefore ${JSON.stringify(before)}\nafter  ${JSON.stringify(after)}`);
      }
    },
    cleanup: t.cleanup,
  };
}

function outsideState(dir: string): Record<string, Node> {
  const all = snapshot(dir);
  const out: Record<string, Node> = {};
  for (const [k, v] of all) if (k !== 'root' && !k.startsWith('root/')) out[k] = v;
  return out;
}

/** Recomputes the checksum of the 512-byte header at `offset` of `tarBuf` after a test edited it. */
export function fixChecksum(tarBuf: Buffer, offset = 0): Buffer {
  const b = tarBuf.subarray(offset, offset + 512);
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const x of b) sum += x;
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1');
  return tarBuf;
}
