import { chmod, mkdir, open as openFile } from 'node:fs/promises';
import { arch, constants, endianness } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { RootDatabase } from 'lmdb';
import { BerthError } from '../errors.js';

// lmdb-js by require(), not import: its CommonJS entry is one bundled file, its ESM entry a
// graph of modules (and msgpackr's) that node resolves and links one by one, ~40 ms more
// of every command's start (the bundle takes its JavaScript in: scripts/bundle.ts). Nothing else in berth
// loads lmdb-js as a value, so there is one instance.
const { open } = createRequire(import.meta.url)('lmdb') as typeof import('lmdb');

/**
 * Owns opening an embedded LMDB environment (npm `lmdb`) durably and
 * safely, the check of its data file's header, and translating what LMDB,
 * lmdb-js or the file system throw into BerthErrors; also the key and label
 * checks every LMDB-backed record store applies. It must not know any
 * record schema: databases, values and schema versions belong to its
 * callers (metadata/, snapshots/), which are siblings and share this instead.
 *
 * Durability: every write is one LMDB transaction, committed with fsync before
 * its promise resolves. That takes `overlappingSync: false`: with lmdb-js's
 * default (true) a commit resolves before it is flushed, and after a power cut
 * (a new boot id) lmdb-js rolls back to the last flushed transaction, so
 * a write the caller was told had succeeded can vanish. noSync and noMetaSync
 * stay off; LMDB's two meta pages then keep the file consistent at any cut.
 * (strace of a put: the data pages are fdatasync'd and the meta page written
 * through an O_DSYNC descriptor before the promise resolves.) Every berth
 * process opens with these options; they are per process, not in the file.
 * `eventTurnBatching: false` because a failed batched commit (a full disk)
 * rejects a promise of lmdb-js's own that nobody awaits, which would crash
 * the process; callers write through explicit transactions anyway.
 */

// LMDB keys are at most 1978 bytes; names and ids beyond this are refused up front.
const MAX_KEY_BYTES = 1024;

const MDB = {
  MAP_FULL: -30792,
  READERS_FULL: -30790,
  TXN_FULL: -30788,
  INVALID: -30793,
  VERSION_MISMATCH: -30794,
  PANIC: -30795,
  CORRUPTED: -30796,
  PAGE_NOTFOUND: -30797,
  INCOMPATIBLE: -30784,
  BAD_CHECKSUM: -30778,
} as const;

/** How a caller names its environment in errors. */
export interface LmdbNames {
  /** Names the data file in errors about it: "metadata file" gives "metadata file /r/meta/data.mdb is truncated". */
  file: string;
  /** What to do about a damaged environment. */
  restoreHint: string;
}

export interface DurableEnv {
  root: RootDatabase;
  /** No environment existed before: once the caller has initialised it, it calls syncEntries(path, created). */
  fresh: boolean;
  /** The first directory mkdir created, if it created any. */
  created: string | undefined;
}

/**
 * Opens (creating when absent) the environment in directory `path` with the
 * durable options above. The directory gets mode 0700, also when it already
 * existed. The data file is checked first (see checkDataFile). Errors are
 * left for the caller to translate, with the operation it names.
 */
export async function openDurableEnv(path: string, opts: { maxDbs: number; names: LmdbNames }): Promise<DurableEnv> {
  const created = await mkdir(path, { recursive: true, mode: 0o700 });
  await chmod(path, 0o700); // also when it already existed, or the umask took owner bits
  const fresh = !(await checkDataFile(join(path, 'data.mdb'), opts.names));
  const root = open({ path, noSubdir: false, maxDbs: opts.maxDbs, overlappingSync: false, eventTurnBatching: false });
  return { root, fresh, created };
}

/**
 * LMDB syncs its file, not the directory entries that make a new environment
 * findable after a power cut: fsyncs `dir` (holding data.mdb) and, up to the
 * parent of `created` (the first directory mkdir made), each parent.
 */
export async function syncEntries(dir: string, created: string | undefined): Promise<void> {
  const last = created === undefined ? dir : dirname(created);
  for (let d = dir; ; d = dirname(d)) {
    await fsyncDir(d);
    if (d === last || d === dirname(d)) return;
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await openFile(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Checks the first meta page of an existing data.mdb before LMDB sees it:
 * lmdb-js 3.5 crashes the whole process (a native fault while cleaning up)
 * when LMDB refuses to open a file, so a damaged file must be caught here.
 * Layout (mdb.c; w = the native word size; the file is in native byte order):
 * page header { pgno: w, txnid: w, pad: u16, flags: u16, bounds: u32 }, then
 * the meta { magic: u32, version: u32, address: w, mapsize: w, free db { pad: u32 = page size, ... } }.
 * LMDB needs both meta pages, so the file holds at least two pages.
 * Returns false when there is no environment yet (no file, or an empty one).
 */
export async function checkDataFile(file: string, names: LmdbNames): Promise<boolean> {
  let fh;
  try {
    fh = await openFile(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
  try {
    const { size } = await fh.stat();
    if (size === 0) return false; // LMDB initialises an empty file as a new environment
    const w = arch().endsWith('64') ? 8 : 4;
    const buf = Buffer.alloc(4 * w + 20);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    const le = endianness() === 'LE';
    const u16 = (at: number) => (le ? buf.readUInt16LE(at) : buf.readUInt16BE(at));
    const u32 = (at: number) => (le ? buf.readUInt32LE(at) : buf.readUInt32BE(at));
    const corrupt = (what: string) =>
      new BerthError('CORRUPT', `${names.file} ${file} ${what}`, {
        hint: names.restoreHint,
        details: { path: file },
      });
    if (bytesRead < buf.length) throw corrupt(`is truncated (${size} bytes)`);
    const P_META = 0x08;
    const MAGIC = 0xbeefc0de;
    if (!(u16(2 * w + 2) & P_META) || u32(2 * w + 8) !== MAGIC) throw corrupt('is not an LMDB environment');
    const version = u32(2 * w + 12) & 0xffff;
    if (version !== 2) {
      throw new BerthError('UNSUPPORTED', `${names.file} ${file} has LMDB data format ${version}, this berth reads format 2`, { details: { path: file } });
    }
    const pageSize = u32(4 * w + 16);
    if (pageSize < 256 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) throw corrupt(`has an invalid page size ${pageSize}`);
    if (size < 2 * pageSize) throw corrupt(`is truncated (${size} bytes, page size ${pageSize})`);
    return true;
  } finally {
    await fh.close();
  }
}

/** lmdb-js rejects a failed commit with a generic error whose `commitError` promise holds the cause. */
export async function commitCause(err: unknown): Promise<unknown> {
  const inner = (err as { commitError?: unknown } | null)?.commitError;
  if (!(inner instanceof Promise)) return err;
  return inner.then(
    () => err,
    (cause: unknown) => cause,
  );
}

/**
 * Translates what LMDB, lmdb-js or the file system threw while doing `what`
 * to the environment at `path` into a BerthError; BerthErrors pass through.
 * `where` ends the message, in parentheses ("metadata store /r/meta").
 * LMDB codes are negative numbers, system errors positive errno values
 * (from LMDB) or names (from node:fs).
 */
export function translateLmdbError(err: unknown, path: string, what: string, opts: { where: string; restoreHint: string }): BerthError {
  if (err instanceof BerthError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  const text = err instanceof Error ? err.message : String(err);
  const errno = typeof code === 'string' ? code : typeof code === 'number' && code > 0 ? errnoName(code) : undefined;
  const message = `${what}: ${text} (${opts.where})`;
  const details = { path, ...(code !== undefined ? { lmdbCode: code } : {}) };
  const mk = (c: BerthError['code'], hint?: string) => new BerthError(c, message, { cause: err, details, ...(hint ? { hint } : {}) });

  if (code === MDB.MAP_FULL || code === MDB.TXN_FULL) return mk('UNAVAILABLE', `the store cannot grow: free disk space on the file system of ${path} and retry`);
  if (errno === 'ENOSPC' || errno === 'EDQUOT') return mk('UNAVAILABLE', `the disk holding ${path} is full: free some space and retry`);
  if (code === MDB.READERS_FULL) return mk('UNAVAILABLE', `too many processes have ${path} open; retry when some have exited`);
  if (errno === 'EIO') return mk('UNAVAILABLE', `the disk holding ${path} reported an I/O error; check it`);
  if (code === MDB.CORRUPTED || code === MDB.PAGE_NOTFOUND || code === MDB.PANIC || code === MDB.INVALID || code === MDB.BAD_CHECKSUM) {
    return mk('CORRUPT', opts.restoreHint);
  }
  if (code === MDB.VERSION_MISMATCH || code === MDB.INCOMPATIBLE) return mk('UNSUPPORTED', 'the store was written by an incompatible LMDB version');
  if (errno === 'EACCES' || errno === 'EPERM' || errno === 'EROFS') return mk('INVALID_ARGUMENT', `berth needs to read and write ${path}; check its permissions or choose another --root`);
  if (err instanceof SyntaxError) return mk('CORRUPT', opts.restoreHint); // a stored value that is not JSON
  return mk('INTERNAL');
}

function errnoName(n: number): string | undefined {
  return Object.entries(constants.errno).find(([, v]) => v === n)?.[0];
}

/** A key of an LMDB database: a non-empty string of at most MAX_KEY_BYTES bytes. */
export function checkKey(s: unknown, what: string): asserts s is string {
  if (typeof s !== 'string' || s.length === 0) throw new BerthError('INVALID_ARGUMENT', `${what} must be a non-empty string, got ${JSON.stringify(s)}`);
  if (Buffer.byteLength(s) > MAX_KEY_BYTES) throw new BerthError('INVALID_ARGUMENT', `${what} is longer than ${MAX_KEY_BYTES} bytes: ${JSON.stringify(s.slice(0, 64))}...`);
}

/** Labels: non-empty keys with string values; returns a copy (none when undefined). */
export function checkLabels(labels: Record<string, string> | undefined, what: string): Record<string, string> {
  if (labels === undefined) return {};
  if (typeof labels !== 'object' || labels === null || Array.isArray(labels)) throw new BerthError('INVALID_ARGUMENT', `${what} must be an object of strings`);
  for (const [key, value] of Object.entries(labels)) {
    if (key === '' || typeof value !== 'string') throw new BerthError('INVALID_ARGUMENT', `${what}: label ${JSON.stringify(key)} must have a non-empty key and a string value`);
  }
  return { ...labels };
}
