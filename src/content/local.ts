import { createHash, randomBytes, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { link, mkdir, open, readFile, readdir, rename, rmdir, stat, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BerthError } from '../errors.js';
import { nullLogger, type Logger } from '../log.js';
import { digestAlgorithm, digestHex, isDigest, parseDigest, type Digest } from '../oci/digest.js';
import type { BlobInfo, ContentStore, ContentWriter, Expected, IngestStatus } from './store.js';

/**
 * LocalContentStore keeps blobs as files under its root directory:
 *
 *   blobs/<alg>/<hex>          committed blobs, read-only (0444)
 *   ingest/<sha256(ref)>/      one directory per ingest; the name is a hash so any ref string is safe
 *   ingest/.deleting-PID-*     a blob delete({unless}) moved aside; removed by a later one once PID is gone
 *     data                     the bytes received so far
 *     ref, expected            the ref and the expected {digest, size}, for ingests()
 *     lock                     {"pid","boot"} of the writer holding the ref
 *
 * Directories are 0700. A blob appears under blobs/ only by rename(2) of a
 * verified, fsynced ingest file, followed by an fsync of the directory, so a
 * crash or power cut leaves either no blob or a whole one.
 *
 * Writers of one ref are serialised in-process by a wait queue and across
 * processes by the lock file. The lock is created complete (written to a
 * temporary file, then link(2)ed into place, which fails if a lock exists) so
 * a lock file's content is always whole. A lock is stale, and taken over, when
 * its holder is gone: its pid is dead, it is from an earlier boot, it names
 * this process (whose own writers are tracked by the queue), or it is
 * unreadable (cut short by a power loss). Writers must be committed, closed or
 * aborted: until then they hold their ref.
 */

export interface LocalContentStoreOptions {
  /** The store's directory, e.g. /var/lib/berth/content; created (0700) on first write. */
  root: string;
  logger?: Logger;
  /**
   * This process's pid, written into lock files. Injected, with isAlive,
   * because library code does not touch `process`: the shell passes
   * `process.pid`.
   */
  pid: number;
  /**
   * Whether a pid found in a lock file is alive. The shell passes
   * `pid => { try { process.kill(pid, 0); return true } catch (e) { return e.code === 'EPERM' } }`
   * (ESRCH means gone; EPERM means alive but someone else's).
   */
  isAlive: (pid: number) => boolean;
  /**
   * How long writer() waits for a ref held by another writer before failing
   * with LOCKED, unless the call says otherwise. Default 10 minutes: long
   * enough for another pull of the same layer to finish, short enough that a
   * stuck holder surfaces as an error.
   */
  lockTimeoutMs?: number;
  /** Where the current boot's id is read, so locks from before a reboot are stale. */
  bootIdPath?: string;
}

const DEFAULT_LOCK_TIMEOUT_MS = 10 * 60 * 1000;
const IO_CHUNK = 1 << 20;

/** Under ingest/: `.deleting-PID-RANDOM`, a blob that delete({unless}) moved aside while it decides. */
const ASIDE_PREFIX = '.deleting-';
const ALGORITHMS = ['sha256', 'sha512'] as const;

/** In-process wait queues, keyed by ingest directory, shared by every store instance in this process. */
const queues = new Map<string, Array<() => void>>();

interface Held {
  /** Unlinks the lock file (once), then hands the ref to the next in-process waiter. */
  release(): Promise<void>;
}

export class LocalContentStore implements ContentStore {
  readonly root: string;
  private readonly logger: Logger;
  private readonly pid: number;
  private readonly isAlive: (pid: number) => boolean;
  private readonly lockTimeoutMs: number;
  private readonly bootIdPath: string;
  private bootId: Promise<string> | undefined;
  private asideSwept = false;

  constructor(opts: LocalContentStoreOptions) {
    this.root = resolve(opts.root);
    this.logger = opts.logger ?? nullLogger;
    this.pid = opts.pid;
    this.isAlive = opts.isAlive;
    this.lockTimeoutMs = opts.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS;
    this.bootIdPath = opts.bootIdPath ?? '/proc/sys/kernel/random/boot_id';
  }

  /** The path of a blob; the digest is validated first, so it cannot name anything outside blobs/. */
  blobPath(digest: Digest): string {
    const d = parseDigest(digest);
    return join(this.root, 'blobs', digestAlgorithm(d), digestHex(d));
  }

  /** The directory of an ingest, named by a hash of the ref. */
  ingestPath(ref: string): string {
    return join(this.root, 'ingest', createHash('sha256').update(ref).digest('hex'));
  }

  async info(digest: Digest): Promise<BlobInfo | undefined> {
    return blobInfo(this.blobPath(digest), digest);
  }

  async reader(digest: Digest, opts: { start?: number } = {}): Promise<Readable> {
    const start = opts.start ?? 0;
    if (!Number.isSafeInteger(start) || start < 0) {
      throw new BerthError('INVALID_ARGUMENT', `reader start ${start} for blob ${digest} is not a non-negative integer`);
    }
    const fh = await this.openBlob(digest);
    return fh.createReadStream({ start, highWaterMark: IO_CHUNK });
  }

  async followIngest(ref: string, size: number, signal: AbortSignal): Promise<Readable | undefined> {
    let fh: FileHandle;
    try {
      fh = await open(join(this.ingestPath(ref), 'data'), 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw fsError(err, 'open', join(this.ingestPath(ref), 'data'));
    }
    return Readable.from(followFile(fh, size, signal), { objectMode: false });
  }

  async readBytes(digest: Digest, max: number): Promise<Buffer> {
    const fh = await this.openBlob(digest);
    try {
      const { size } = await fh.stat();
      if (size > max) {
        throw new BerthError('TOO_LARGE', `blob ${digest} is ${size} bytes, more than the ${max} allowed`, {
          details: { digest, size, max },
        });
      }
      return await fh.readFile();
    } catch (err) {
      throw fsError(err, 'read', this.blobPath(digest));
    } finally {
      await fh.close();
    }
  }

  async writer(ref: string, expected: Expected, opts: { timeoutMs?: number } = {}): Promise<ContentWriter> {
    return this.openWriter(ref, expected, opts.timeoutMs ?? this.lockTimeoutMs);
  }

  async put(expected: Expected, data: Uint8Array | Readable, ref?: string): Promise<BlobInfo> {
    const w = await this.openWriter(ref ?? expected.digest, expected, this.lockTimeoutMs);
    try {
      if (w.existing) {
        if (data instanceof Readable) data.destroy();
        return await w.commit();
      }
      if (w.offset > 0) await w.truncate();
      const source = data instanceof Readable ? data : Readable.from([Buffer.from(data.buffer, data.byteOffset, data.byteLength)]);
      await pipeline(source, w.stream());
      return await w.commit();
    } catch (err) {
      await w.abort().catch(() => {});
      throw err;
    }
  }

  async *list(): AsyncIterable<BlobInfo> {
    for (const alg of ALGORITHMS) {
      const dir = join(this.root, 'blobs', alg);
      let names: string[];
      try {
        names = await readdir(dir);
      } catch (err) {
        if (errno(err) === 'ENOENT') continue;
        throw fsError(err, 'list', dir);
      }
      for (const name of names.sort()) {
        const digest = `${alg}:${name}`;
        if (!isDigest(digest)) continue; // not a blob: a stray temporary file
        const info = await this.info(digest);
        if (info) yield info; // else deleted while listing
      }
    }
  }

  async delete(digest: Digest, opts: { unless?: () => Promise<boolean> } = {}): Promise<boolean> {
    const path = this.blobPath(digest);
    let doomed = path;
    if (opts.unless) {
      // Aside on the same filesystem, under a name no listing reads; what a process killed meanwhile left is removed here.
      await this.sweepAside();
      doomed = join(this.root, 'ingest', `${ASIDE_PREFIX}${this.pid}-${randomBytes(6).toString('hex')}`);
      try {
        await mkdir(join(this.root, 'ingest'), { recursive: true, mode: 0o700 });
        await rename(path, doomed);
      } catch (err) {
        if (errno(err) === 'ENOENT') throw this.blobNotFound(digest, err);
        throw fsError(err, 'delete', path);
      }
      let keep = true;
      try {
        keep = await opts.unless();
      } finally {
        if (keep) {
          // Put back, durably (unless a writer stored it anew meanwhile: the same bytes).
          await publish(doomed, path, digest);
          await unlinkOptional(doomed);
        }
      }
      if (keep) return false;
    }
    try {
      await unlink(doomed);
    } catch (err) {
      if (errno(err) === 'ENOENT') throw this.blobNotFound(digest, err);
      throw fsError(err, 'delete', path);
    }
    return true;
  }

  /** Once per store: blobs that a delete of a process now gone had moved aside. */
  private async sweepAside(): Promise<void> {
    if (this.asideSwept) return;
    this.asideSwept = true;
    const dir = join(this.root, 'ingest');
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const pid = name.startsWith(ASIDE_PREFIX) ? Number(name.slice(ASIDE_PREFIX.length).split('-')[0]) : NaN;
      if (Number.isSafeInteger(pid) && pid !== this.pid && !this.isAlive(pid)) await unlinkOptional(join(dir, name));
    }
  }

  async ingests(): Promise<IngestStatus[]> {
    const root = join(this.root, 'ingest');
    let entries: string[];
    try {
      entries = await readdir(root);
    } catch (err) {
      if (errno(err) === 'ENOENT') return [];
      throw fsError(err, 'list', root);
    }
    const out: IngestStatus[] = [];
    for (const name of entries.sort()) {
      if (!/^[a-f0-9]{64}$/.test(name)) continue;
      const dir = join(root, name);
      const ref = await readOptional(join(dir, 'ref'));
      if (ref === undefined) continue; // being created or removed
      const expected = parseExpected(await readOptional(join(dir, 'expected')));
      const st = await statOptional(join(dir, 'data'));
      out.push({
        ref,
        offset: st?.size ?? 0,
        ...(expected ? { expected } : {}),
        updatedAt: st?.mtime ?? (await statOptional(join(dir, 'ref')))?.mtime ?? new Date(0),
      });
    }
    return out;
  }

  /** Deletes an ingest's partial data. NOT_FOUND when there is none; LOCKED, without waiting, while a writer holds it. */
  async abortIngest(ref: string): Promise<void> {
    const dir = this.ingestPath(ref);
    if (!(await statOptional(dir))) {
      throw new BerthError('NOT_FOUND', `no ingest ${JSON.stringify(ref)} in ${this.root}`, { details: { ref } });
    }
    const held = await this.lock(ref, dir, 0, false);
    await removeIngest(dir, held);
  }

  async verify(digest: Digest): Promise<boolean> {
    const hash = createHash(digestAlgorithm(parseDigest(digest)));
    const path = this.blobPath(digest);
    try {
      for await (const chunk of await this.reader(digest)) hash.update(chunk as Buffer);
    } catch (err) {
      throw fsError(err, 'read', path);
    }
    return `${digestAlgorithm(digest)}:${hash.digest('hex')}` === digest;
  }

  // --- writers ---

  private async openWriter(ref: string, expected: Expected, timeoutMs: number): Promise<LocalWriter> {
    if (typeof ref !== 'string' || ref === '') throw new BerthError('INVALID_ARGUMENT', 'an ingest ref must be a non-empty string');
    const exp = checkExpected(expected);
    const dir = this.ingestPath(ref);
    const held = await this.lock(ref, dir, timeoutMs, true);
    try {
      const blob = await this.info(exp.digest);
      if (blob) return new LocalWriter(ref, dir, exp, this.blobPath(exp.digest), held, { existing: blob });
      const data = join(dir, 'data');
      const previous = parseExpected(await readOptional(join(dir, 'expected')));
      if (previous && previous.digest !== exp.digest) {
        // The partial data is the start of another blob; it cannot become this one.
        this.logger.warn('ingest restarted: expected digest changed', { ref, previous: previous.digest, digest: exp.digest });
        await unlinkOptional(data);
      }
      if (!previous || previous.digest !== exp.digest || previous.size !== exp.size) {
        await writeFile(join(dir, 'ref'), ref, { mode: 0o600 });
        await writeFile(join(dir, 'expected'), JSON.stringify(exp), { mode: 0o600 });
      }
      const fh = await open(data, 'a', 0o600);
      try {
        // The hash state cannot be persisted, so resuming re-reads what is on disk.
        let { hash, offset } = await hashFile(data, digestAlgorithm(exp.digest));
        if (exp.size !== undefined && offset > exp.size) {
          this.logger.warn('ingest restarted: more data than expected', { ref, offset, size: exp.size });
          await fh.truncate(0);
          hash = createHash(digestAlgorithm(exp.digest));
          offset = 0;
        }
        if (offset > 0) this.logger.debug('ingest resumed', { ref, offset });
        return new LocalWriter(ref, dir, exp, this.blobPath(exp.digest), held, { fh, hash, offset });
      } catch (err) {
        await fh.close();
        throw err;
      }
    } catch (err) {
      await held.release();
      throw fsError(err, 'open ingest', dir);
    }
  }

  // --- locking ---

  /**
   * Takes the ref: first the in-process queue, then the lock file, within
   * timeoutMs overall. `create` makes the ingest directory when missing
   * (otherwise a missing directory is NOT_FOUND).
   */
  private async lock(ref: string, dir: string, timeoutMs: number, create: boolean): Promise<Held> {
    const deadline = Date.now() + timeoutMs;
    await this.queue(ref, dir, timeoutMs);
    const leaveQueue = () => {
      const waiters = queues.get(dir);
      const next = waiters?.shift();
      if (next) next();
      else queues.delete(dir);
    };
    try {
      const lockPath = await this.lockFile(ref, dir, deadline, timeoutMs, create);
      let released = false;
      return {
        release: async () => {
          if (released) return;
          released = true;
          try {
            await unlinkOptional(lockPath);
          } finally {
            leaveQueue();
          }
        },
      };
    } catch (err) {
      leaveQueue();
      throw err;
    }
  }

  private async queue(ref: string, dir: string, timeoutMs: number): Promise<void> {
    const waiters = queues.get(dir);
    if (!waiters) {
      queues.set(dir, []);
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const admit = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        waiters.splice(waiters.indexOf(admit), 1);
        reject(this.lockedError(ref, this.pid, timeoutMs));
      }, timeoutMs);
      waiters.push(admit);
    });
  }

  private async lockFile(ref: string, dir: string, deadline: number, timeoutMs: number, create: boolean): Promise<string> {
    const lockPath = join(dir, 'lock');
    const mine = `${JSON.stringify({ pid: this.pid, boot: await this.boot() })}\n`;
    const tmp = join(this.root, 'ingest', `.lock-${this.pid}-${randomBytes(6).toString('hex')}`);
    try {
      await mkdir(join(this.root, 'ingest'), { recursive: true, mode: 0o700 });
      await writeFile(tmp, mine, { mode: 0o600 });
      let delay = 10;
      let logged = false;
      for (;;) {
        try {
          await link(tmp, lockPath);
          return lockPath;
        } catch (err) {
          if (errno(err) === 'ENOENT') {
            // The ingest directory is gone (or was never there): a writer that committed removed it.
            if (!create) throw new BerthError('NOT_FOUND', `no ingest ${JSON.stringify(ref)} in ${this.root}`, { details: { ref } });
            await mkdir(dir, { recursive: true, mode: 0o700 });
            await writeFile(tmp, mine, { mode: 0o600 });
            continue;
          }
          if (errno(err) !== 'EEXIST') throw err;
        }
        const text = await readOptional(lockPath);
        if (text === undefined) continue; // released meanwhile
        const holder = parseLock(text);
        if (await this.isStale(holder)) {
          await this.breakLock(lockPath, text, ref, holder?.pid);
          continue;
        }
        const left = deadline - Date.now();
        if (left <= 0) throw this.lockedError(ref, holder?.pid, timeoutMs);
        if (!logged) this.logger.info('waiting for ingest held by another process', { ref, holder: holder?.pid });
        logged = true;
        await new Promise((r) => setTimeout(r, Math.min(delay, left)));
        delay = Math.min(delay * 2, 250);
      }
    } catch (err) {
      throw fsError(err, 'lock', lockPath);
    } finally {
      await unlinkOptional(tmp);
    }
  }

  private async isStale(holder: { pid: number; boot: string } | undefined): Promise<boolean> {
    if (!holder) return true;
    const boot = await this.boot();
    if (holder.boot && boot && holder.boot !== boot) return true;
    return holder.pid === this.pid || !this.isAlive(holder.pid);
  }

  /**
   * Removes a stale lock. It is moved aside first and compared, because
   * another process may have replaced it since it was read; a lock moved
   * aside by mistake is linked back.
   */
  private async breakLock(lockPath: string, staleText: string, ref: string, pid: number | undefined): Promise<void> {
    const aside = join(this.root, 'ingest', `.stale-${this.pid}-${randomBytes(6).toString('hex')}`);
    try {
      await rename(lockPath, aside);
    } catch (err) {
      if (errno(err) === 'ENOENT') return;
      throw err;
    }
    if ((await readOptional(aside)) === staleText) {
      this.logger.warn('took over stale ingest lock', { ref, holder: pid });
    } else {
      await link(aside, lockPath).catch((err: unknown) => {
        if (errno(err) !== 'EEXIST') throw err;
      });
    }
    await unlinkOptional(aside);
  }

  private boot(): Promise<string> {
    this.bootId ??= readFile(this.bootIdPath, 'utf8').then(
      (s) => s.trim(),
      () => '',
    );
    return this.bootId;
  }

  private lockedError(ref: string, pid: number | undefined, timeoutMs: number): BerthError {
    const who = pid === undefined ? 'another writer' : pid === this.pid ? `another writer in this process (pid ${pid})` : `process ${pid}`;
    return new BerthError('LOCKED', `ingest ${JSON.stringify(ref)} is held by ${who}; gave up after waiting ${timeoutMs} ms`, {
      hint: 'another pull or import of the same content is in progress; retry when it finishes, or stop the process holding it',
      details: { ref, holder: pid, timeoutMs },
    });
  }

  // --- reading ---

  private async openBlob(digest: Digest): Promise<FileHandle> {
    const path = this.blobPath(digest);
    try {
      return await open(path, 'r');
    } catch (err) {
      if (errno(err) === 'ENOENT') throw this.blobNotFound(digest, err);
      throw fsError(err, 'open', path);
    }
  }

  private blobNotFound(digest: Digest, cause: unknown): BerthError {
    return new BerthError('NOT_FOUND', `blob ${digest} not found in ${this.root}`, { cause, details: { digest } });
  }
}

class LocalWriter implements ContentWriter {
  offset: number;
  /** Set when the blob was committed before this writer opened: nothing is written, commit returns it. */
  readonly existing: BlobInfo | undefined;
  private readonly fh: FileHandle | undefined;
  private hash: Hash | undefined;
  private active: Writable | undefined;
  private failed: BerthError | undefined;
  private done = false;

  constructor(
    readonly ref: string,
    private readonly dir: string,
    private readonly expected: { digest: Digest; size?: number },
    private readonly target: string,
    private readonly held: Held,
    state: { existing: BlobInfo } | { fh: FileHandle; hash: Hash; offset: number },
  ) {
    if ('existing' in state) {
      this.existing = state.existing;
      this.offset = state.existing.size;
    } else {
      this.fh = state.fh;
      this.hash = state.hash;
      this.offset = state.offset;
    }
  }

  stream(): Writable {
    this.usable();
    if (this.active && !this.active.writableFinished && !this.active.destroyed) {
      throw new BerthError('INTERNAL', `ingest ${JSON.stringify(this.ref)} already has an open stream`);
    }
    const w = new Writable({
      highWaterMark: IO_CHUNK,
      write: (chunk: Buffer, _enc, cb) => this.append([chunk], cb),
      writev: (chunks, cb) => this.append(chunks.map((c) => c.chunk as Buffer), cb),
    });
    this.active = w;
    return w;
  }

  /** Writes and hashes a batch: one write syscall per batch, hashing while the write is in flight. */
  private append(bufs: Buffer[], cb: (err?: Error | null) => void): void {
    if (this.done || this.failed) return cb(this.failed ?? this.closedError());
    let n = 0;
    for (const b of bufs) n += b.length;
    const size = this.expected.size;
    if (size !== undefined && this.offset + n > size) {
      return cb(new BerthError('SIZE_MISMATCH', `ingest ${JSON.stringify(this.ref)} of ${this.expected.digest}: expected ${size} bytes, received more (${this.offset + n} so far)`, {
        details: { ref: this.ref, digest: this.expected.digest, expected: size, found: this.offset + n },
      }));
    }
    if (!this.fh || !this.hash) {
      this.offset += n; // the blob exists; the bytes are not needed
      return cb();
    }
    const written = writeAll(this.fh, bufs, n);
    for (const b of bufs) this.hash.update(b);
    written.then(
      () => {
        this.offset += n;
        cb();
      },
      (err: unknown) => {
        // The hash now covers bytes that may not be on disk: this writer cannot commit; a new one re-reads the file.
        this.failed = fsError(err, 'write', join(this.dir, 'data'));
        cb(this.failed);
      },
    );
  }

  async truncate(): Promise<void> {
    this.usable();
    this.noActiveStream('truncate');
    if (this.fh) {
      try {
        await this.fh.truncate(0);
      } catch (err) {
        throw fsError(err, 'truncate', join(this.dir, 'data'));
      }
      this.hash = createHash(digestAlgorithm(this.expected.digest));
    }
    this.offset = 0;
  }

  async commit(): Promise<BlobInfo> {
    if (this.done) throw this.closedError();
    this.noActiveStream('commit');
    if (this.failed) {
      await this.close();
      throw this.failed;
    }
    this.done = true;
    const { digest, size } = this.expected;
    try {
      if (this.existing || !this.fh || !this.hash) {
        const info = await blobInfo(this.target, digest);
        if (!info) throw new BerthError('NOT_FOUND', `blob ${digest} was deleted while ingest ${JSON.stringify(this.ref)} was open`, { details: { digest, ref: this.ref } });
        if (size !== undefined && info.size !== size) {
          throw new BerthError('SIZE_MISMATCH', `ingest ${JSON.stringify(this.ref)}: expected ${size} bytes of ${digest}, found the stored blob has ${info.size}`, {
            details: { ref: this.ref, digest, expected: size, found: info.size },
          });
        }
        await removeIngest(this.dir, this.held);
        return info;
      }
      const mismatch = this.mismatch(size, this.hash);
      if (mismatch) {
        await this.fh.close();
        await removeIngest(this.dir, this.held);
        throw mismatch;
      }
      const data = join(this.dir, 'data');
      try {
        const now = new Date();
        await this.fh.utimes(now, now); // committedAt is the mtime
        await this.fh.sync();
        await this.fh.chmod(0o444);
      } catch (err) {
        throw fsError(err, 'sync', data);
      } finally {
        await this.fh.close();
      }
      const info = await publish(data, this.target, digest);
      await removeIngest(this.dir, this.held);
      return info;
    } finally {
      await this.held.release();
    }
  }

  private mismatch(size: number | undefined, hash: Hash): BerthError | undefined {
    const { digest } = this.expected;
    const where = `ingest ${JSON.stringify(this.ref)}`;
    if (size !== undefined && this.offset !== size) {
      return new BerthError('SIZE_MISMATCH', `${where}: expected ${size} bytes of ${digest}, found ${this.offset}`, {
        details: { ref: this.ref, digest, expected: size, found: this.offset },
      });
    }
    const found = `${digestAlgorithm(digest)}:${hash.digest('hex')}`;
    if (found !== digest) {
      return new BerthError('DIGEST_MISMATCH', `${where}: expected digest ${digest}, found ${found}`, {
        details: { ref: this.ref, expected: digest, found },
      });
    }
    return undefined;
  }

  async close(): Promise<void> {
    if (this.done) return;
    this.done = true;
    this.active?.destroy();
    try {
      await this.fh?.close();
    } finally {
      await this.held.release();
    }
  }

  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    this.active?.destroy();
    try {
      await this.fh?.close();
      await removeIngest(this.dir, this.held);
    } finally {
      await this.held.release();
    }
  }

  private usable(): void {
    if (this.done) throw this.closedError();
    if (this.failed) throw this.failed;
  }

  private noActiveStream(what: string): void {
    if (this.active && !this.active.writableFinished && !this.active.destroyed) {
      throw new BerthError('INTERNAL', `${what} of ingest ${JSON.stringify(this.ref)} while its stream is still open; end the stream first`);
    }
  }

  private closedError(): BerthError {
    return new BerthError('INTERNAL', `writer for ingest ${JSON.stringify(this.ref)} was already committed, closed or aborted`);
  }
}

// --- helpers ---

async function blobInfo(path: string, digest: Digest): Promise<BlobInfo | undefined> {
  const st = await statOptional(path);
  return st && { digest, size: st.size, committedAt: st.mtime };
}

/** Makes the synced file `data` the blob at `target`: rename(2) into blobs/, then fsync the directory. */
async function publish(data: string, target: string, digest: Digest): Promise<BlobInfo> {
  const dir = dirname(target);
  try {
    const existing = await blobInfo(target, digest);
    if (existing) return existing; // another writer won the race
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await rename(data, target);
    const dh = await open(dir, 'r');
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  } catch (err) {
    throw fsError(err, 'commit', target);
  }
  const info = await blobInfo(target, digest);
  if (!info) throw new BerthError('INTERNAL', `blob ${digest} vanished right after commit to ${target}`);
  return info;
}

/** Deletes an ingest's files, releases its lock, then removes the directory unless another writer is already recreating it. */
async function removeIngest(dir: string, held: Held): Promise<void> {
  for (const name of ['data', 'expected', 'ref']) await unlinkOptional(join(dir, name));
  await held.release();
  try {
    await rmdir(dir);
  } catch (err) {
    if (errno(err) !== 'ENOENT' && errno(err) !== 'ENOTEMPTY') throw fsError(err, 'remove', dir);
  }
}

function checkExpected(expected: Expected): { digest: Digest; size?: number } {
  const digest = parseDigest(expected.digest, 'expected digest');
  const size = expected.size;
  if (size === undefined) return { digest };
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new BerthError('INVALID_ARGUMENT', `expected size ${size} of ${digest} is not a non-negative integer`);
  }
  return { digest, size };
}

function parseExpected(text: string | undefined): { digest: Digest; size?: number } | undefined {
  if (text === undefined) return undefined;
  try {
    const v = JSON.parse(text) as { digest?: unknown; size?: unknown };
    if (!isDigest(v.digest)) return undefined;
    return typeof v.size === 'number' ? { digest: v.digest, size: v.size } : { digest: v.digest };
  } catch {
    return undefined;
  }
}

function parseLock(text: string): { pid: number; boot: string } | undefined {
  try {
    const v = JSON.parse(text) as { pid?: unknown; boot?: unknown };
    if (typeof v.pid !== 'number' || !Number.isSafeInteger(v.pid) || v.pid <= 0) return undefined;
    return { pid: v.pid, boot: typeof v.boot === 'string' ? v.boot : '' };
  } catch {
    return undefined;
  }
}

async function hashFile(path: string, alg: 'sha256' | 'sha512'): Promise<{ hash: Hash; offset: number }> {
  const hash = createHash(alg);
  let offset = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: IO_CHUNK })) {
    hash.update(chunk as Buffer);
    offset += (chunk as Buffer).length;
  }
  return { hash, offset };
}

/** Regular files may take fewer bytes than asked (a signal, a nearly full disk); write the rest. */
async function writeAll(fh: FileHandle, bufs: Buffer[], total: number): Promise<void> {
  let done = 0;
  while (done < total) {
    let rest = bufs;
    if (done > 0) {
      rest = [];
      let skip = done;
      for (const b of bufs) {
        if (skip >= b.length) skip -= b.length;
        else {
          rest.push(skip > 0 ? b.subarray(skip) : b);
          skip = 0;
        }
      }
    }
    const { bytesWritten } = rest.length === 1 ? await fh.write(rest[0]!) : await fh.writev(rest);
    if (bytesWritten === 0) throw new BerthError('INTERNAL', `write made no progress after ${done} of ${total} bytes`);
    done += bytesWritten;
  }
}

function errno(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Translates an fs error where it enters; BerthErrors pass through. */
function fsError(err: unknown, action: string, path: string): BerthError {
  if (err instanceof BerthError) return err;
  const code = errno(err);
  const text = `content store: ${action} ${path}: ${err instanceof Error ? err.message : String(err)}`;
  const opts = { cause: err, details: { path, errno: code } };
  switch (code) {
    case 'ENOENT':
      return new BerthError('NOT_FOUND', text, opts);
    case 'ENOSPC':
    case 'EDQUOT':
      return new BerthError('UNAVAILABLE', text, { ...opts, hint: `the filesystem holding ${path} is full; free disk space (berth gc removes unused content) and retry` });
    case 'EMFILE':
    case 'ENFILE':
      return new BerthError('UNAVAILABLE', text, { ...opts, hint: 'too many open files; retry later or raise the open-file limit' });
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new BerthError('INTERNAL', text, { ...opts, hint: `berth needs read and write access to ${path}; check its ownership and permissions and that the filesystem is not read-only` });
    default:
      return new BerthError('INTERNAL', text, opts);
  }
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if (errno(err) === 'ENOENT') return undefined;
    throw fsError(err, 'read', path);
  }
}

async function statOptional(path: string): Promise<{ size: number; mtime: Date } | undefined> {
  try {
    return await stat(path);
  } catch (err) {
    if (errno(err) === 'ENOENT') return undefined;
    throw fsError(err, 'stat', path);
  }
}

async function unlinkOptional(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (err) {
    if (errno(err) !== 'ENOENT') throw fsError(err, 'remove', path);
  }
}

/** How long a follower sleeps at the end of a growing ingest before reading again. */
const FOLLOW_POLL_MS = 5;

/** Reads fh from 0 to size, waiting at EOF for the writer to append. Closes fh. */
async function* followFile(fh: FileHandle, size: number, signal: AbortSignal): AsyncGenerator<Buffer> {
  try {
    let pos = 0;
    while (pos < size) {
      if (signal.aborted) throw new BerthError('CANCELLED', 'stopped following an ingest', { cause: signal.reason });
      const buf = Buffer.allocUnsafe(Math.min(IO_CHUNK, size - pos));
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) {
        await new Promise((r) => setTimeout(r, FOLLOW_POLL_MS));
        continue;
      }
      pos += bytesRead;
      yield bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
    }
  } finally {
    await fh.close();
  }
}
