import { mkdir, open as openFile } from 'node:fs/promises';
import { arch, endianness } from 'node:os';
import { dirname, join } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import { BerthError } from '../errors.js';
import type { SnapshotKind } from './snapshotter.js';
import { syncDir } from './sync.js';

/**
 * The snapshot tree of one snapshotter, in its own LMDB environment (<root>/metadata):
 * snapshots/ may not import metadata/, and the records belong with the
 * directories they describe. One database maps a key (active, view) or a
 * name (committed) to its record; the snapshot's directory is
 * <root>/snapshots/<id>. Values are JSON.
 *
 * Durability is that of metadata/lmdb.ts, for the same reasons:
 * `overlappingSync: false` (a commit resolves only once it is on disk),
 * `eventTurnBatching: false`, every write one child transaction that
 * re-reads what it changes, and the data file's header checked before LMDB
 * opens it (lmdb-js crashes the process on a file LMDB refuses).
 */

export interface SnapshotRecord {
  /** Names the directory <root>/snapshots/<id>. */
  id: string;
  kind: SnapshotKind;
  /** The committed name this snapshot sits on. */
  parent?: string;
  labels: Record<string, string>;
  createdAt: string;
  updatedAt: string;
}

/** Reads and writes inside one transaction; see SnapshotRecords.write. */
export interface RecordTxn {
  get(key: string): SnapshotRecord | undefined;
  put(key: string, rec: SnapshotRecord): void;
  remove(key: string): void;
  all(): Array<[string, SnapshotRecord]>;
}

const SCHEMA_VERSION = 1;
const MAX_KEY_BYTES = 1024;

export class SnapshotRecords {
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly root: RootDatabase,
    private readonly snapshots: Database<SnapshotRecord, string>,
    readonly path: string,
  ) {}

  /**
   * Opens (creating when absent) the records at `path`, written by the
   * snapshotter named `driver`: one root holds one kind of snapshot, and
   * opening it as the other is FAILED_PRECONDITION.
   */
  static async open(path: string, driver: string): Promise<SnapshotRecords> {
    try {
      await mkdir(path, { recursive: true, mode: 0o700 });
      const fresh = !(await checkDataFile(join(path, 'data.mdb')));
      const root = open({ path, maxDbs: 4, overlappingSync: false, eventTurnBatching: false });
      try {
        const meta = root.openDB<unknown, string>('meta', { encoding: 'json' });
        const records = new SnapshotRecords(root, root.openDB<SnapshotRecord, string>('snapshots', { encoding: 'json' }), path);
        const found = await root.childTransaction(() => {
          const had = { version: meta.get('schemaVersion'), driver: meta.get('driver') };
          if (had.version === undefined) {
            meta.putSync('schemaVersion', SCHEMA_VERSION);
            meta.putSync('driver', driver);
            return { version: SCHEMA_VERSION, driver };
          }
          return had;
        });
        if (found.driver !== driver) {
          throw new BerthError('FAILED_PRECONDITION', `snapshot records ${path} belong to the ${String(found.driver)} snapshotter, not ${driver}`, {
            hint: 'give each snapshotter its own root directory',
            details: { path, found: found.driver, expected: driver },
          });
        }
        if (found.version !== SCHEMA_VERSION) {
          throw new BerthError('UNSUPPORTED', `snapshot records ${path} have schema version ${String(found.version)}, this berth reads ${SCHEMA_VERSION}`, {
            hint: 'upgrade berth to the version that wrote them (or newer)',
            details: { path, found: found.version },
          });
        }
        // LMDB syncs its file, not the directory entries that make a new environment findable after a power cut.
        if (fresh) for (const dir of [path, dirname(path)]) await syncDir(dir);
        return records;
      } catch (err) {
        await root.close();
        throw err;
      }
    } catch (err) {
      throw translate(err, path, 'open snapshot records');
    }
  }

  get(key: string): SnapshotRecord | undefined {
    this.checkOpen();
    return this.snapshots.get(key);
  }

  all(): Array<[string, SnapshotRecord]> {
    this.checkOpen();
    return [...this.snapshots.getRange()].map((e) => [e.key, e.value]);
  }

  /**
   * Runs fn in one write transaction (holding LMDB's write lock, so its
   * reads see every process's last commit) and resolves once the commit is
   * on disk; a throw rolls back fn's writes. fn must be synchronous.
   */
  async write<T>(what: string, fn: (txn: RecordTxn) => T): Promise<T> {
    this.checkOpen();
    try {
      const db = this.snapshots;
      const txn: RecordTxn = {
        get: (key) => db.get(key),
        all: () => [...db.getRange()].map((e) => [e.key, e.value]),
        put: (key, rec) => void db.putSync(key, rec),
        remove: (key) => void db.removeSync(key),
      };
      return await this.root.childTransaction(() => fn(txn));
    } catch (err) {
      throw translate(await commitCause(err), this.path, what);
    }
  }

  close(): Promise<void> {
    this.closing ??= this.root.close();
    return this.closing;
  }

  private checkOpen(): void {
    if (this.closing) throw new BerthError('INTERNAL', `snapshot records ${this.path} are closed`);
  }
}

export function checkKey(s: unknown, what: string): asserts s is string {
  if (typeof s !== 'string' || s.length === 0) throw new BerthError('INVALID_ARGUMENT', `${what} must be a non-empty string, got ${JSON.stringify(s)}`);
  if (Buffer.byteLength(s) > MAX_KEY_BYTES) throw new BerthError('INVALID_ARGUMENT', `${what} is longer than ${MAX_KEY_BYTES} bytes: ${JSON.stringify(s.slice(0, 64))}...`);
}

export function checkLabels(labels: Record<string, string> | undefined, what: string): Record<string, string> {
  if (labels === undefined) return {};
  if (typeof labels !== 'object' || labels === null || Array.isArray(labels)) throw new BerthError('INVALID_ARGUMENT', `${what} must be an object of strings`);
  for (const [key, value] of Object.entries(labels)) {
    if (key === '' || typeof value !== 'string') throw new BerthError('INVALID_ARGUMENT', `${what}: label ${JSON.stringify(key)} must have a non-empty key and a string value`);
  }
  return { ...labels };
}

/** lmdb-js rejects a failed commit with a generic error whose `commitError` promise holds the cause. */
async function commitCause(err: unknown): Promise<unknown> {
  const inner = (err as { commitError?: unknown } | null)?.commitError;
  if (!(inner instanceof Promise)) return err;
  return inner.then(
    () => err,
    (cause: unknown) => cause,
  );
}

function translate(err: unknown, path: string, what: string): BerthError {
  if (err instanceof BerthError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  const text = err instanceof Error ? err.message : String(err);
  const details = { path, ...(code !== undefined ? { code } : {}) };
  const full = code === -30792 || code === -30788 || code === 'ENOSPC' || code === 28 || code === 'EDQUOT';
  if (full) return new BerthError('UNAVAILABLE', `${what}: ${text} (${path})`, { cause: err, details, hint: `free disk space on the file system of ${path} and retry` });
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
    return new BerthError('INVALID_ARGUMENT', `${what}: ${text} (${path})`, { cause: err, details, hint: `berth needs to read and write ${path}; check its permissions or choose another --root` });
  }
  if (err instanceof SyntaxError || (typeof code === 'number' && code <= -30778 && code >= -30796)) {
    return new BerthError('CORRUPT', `${what}: ${text} (${path})`, { cause: err, details, hint: restoreHint(path) });
  }
  return new BerthError('INTERNAL', `${what}: ${text} (${path})`, { cause: err, details });
}

function restoreHint(path: string): string {
  return `the snapshot records at ${path} are damaged: move the snapshotter's root aside (images will be unpacked again)`;
}

/**
 * The check of metadata/lmdb.ts's checkDataFile, kept apart because
 * snapshots/ may not import metadata/: the first meta page of an existing
 * data.mdb must be an LMDB meta page of data format 2 with a sane page size,
 * and the file must hold both meta pages. False when there is no environment yet.
 */
async function checkDataFile(file: string): Promise<boolean> {
  let fh;
  try {
    fh = await openFile(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
  try {
    const { size } = await fh.stat();
    if (size === 0) return false;
    const w = arch().endsWith('64') ? 8 : 4;
    const buf = Buffer.alloc(4 * w + 20);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    const le = endianness() === 'LE';
    const u16 = (at: number) => (le ? buf.readUInt16LE(at) : buf.readUInt16BE(at));
    const u32 = (at: number) => (le ? buf.readUInt32LE(at) : buf.readUInt32BE(at));
    const corrupt = (what: string) => new BerthError('CORRUPT', `snapshot records file ${file} ${what}`, { hint: restoreHint(file), details: { path: file } });
    if (bytesRead < buf.length) throw corrupt(`is truncated (${size} bytes)`);
    if (!(u16(2 * w + 2) & 0x08) || u32(2 * w + 8) !== 0xbeefc0de) throw corrupt('is not an LMDB environment');
    const version = u32(2 * w + 12) & 0xffff;
    if (version !== 2) throw new BerthError('UNSUPPORTED', `snapshot records file ${file} has LMDB data format ${version}, this berth reads format 2`, { details: { path: file } });
    const pageSize = u32(4 * w + 16);
    if (pageSize < 256 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) throw corrupt(`has an invalid page size ${pageSize}`);
    if (size < 2 * pageSize) throw corrupt(`is truncated (${size} bytes, page size ${pageSize})`);
    return true;
  } finally {
    await fh.close();
  }
}
