import { createHash } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  lchownSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeSync,
  type Stats,
} from 'node:fs';
import { resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { BerthError, type ErrorCode } from '../errors.js';
import { errnoOf, futimens, lsetxattr, lutimens, mknod } from '../linux/index.js';
import { nullLogger, type Logger } from '../log.js';
import { digestAlgorithm, type Digest, type LayerCompression } from '../oci/index.js';
import { decompress } from './decompress.js';
import { cleanPath, joinPath, RootScope, splitPath } from './scope.js';
import { TarReader, type TarEntry } from './tar.js';

export interface ApplyOptions {
  compression: LayerCompression;
  /** When given, the decompressed stream must hash to it (DIGEST_MISMATCH otherwise). */
  diffId?: Digest;
  logger?: Logger;
  signal?: AbortSignal;
}

export interface ApplyResult {
  /** Digest of the whole decompressed stream, end-of-archive blocks and padding included. */
  diffId: Digest;
  /** Bytes of the decompressed stream. */
  size: number;
  /** Tar entries applied or skipped (extended headers not counted). */
  entries: number;
}

/**
 * Applies a layer blob to `root`, which holds the merged view of the layers
 * below (an overlay mount, or a copy of the parent snapshot), following the
 * OCI changeset rules:
 *
 * - `.wh.NAME` removes NAME (a file or a whole tree); `.wh..wh..opq` in D
 *   removes everything in D that this layer did not put there, wherever
 *   the marker stands in the tar. Other `.wh..wh.` names (AUFS metadata)
 *   are skipped.
 * - An entry replaces what is at its path, except that a directory entry for
 *   an existing directory keeps the children and takes the new metadata.
 * - Hardlinks may point to files of this layer or of lower ones; a hardlink
 *   has no metadata of its own (its inode's is its target's). Through an
 *   overlay, linking to a lower layer's file copies that file up first
 *   (link(2) on overlayfs): the new name shares the copied-up inode, and the
 *   file's other names from lower layers keep the lower inode, so in the
 *   merged view that group splits in two, same content and metadata. berth
 *   accepts this, as overlayfs defines it (containerd 1.6 refuses such layers
 *   outright: it applies into the upper directory, where the target does not
 *   exist); in a plain directory (`image unpack DIR`, the native
 *   snapshotter) the whole group stays one inode.
 * - Ownership is numeric (uid/gid from the tar); modes keep setuid, setgid
 *   and sticky (set after chown, which clears them); xattrs from PAX
 *   SCHILY.xattr records in the user.*, trusted.* (not trusted.overlay.*),
 *   security.capability and POSIX ACL namespaces; mtimes and atimes as in
 *   the tar, directories' last, once all their children are written. The
 *   entry for the root itself is skipped: the root's metadata belongs to the
 *   snapshotter.
 *
 * Path safety: every entry's parent directory is resolved inside `root`
 * with symlinks evaluated relative to it (RootScope); `..` and absolute names
 * are clamped at the root; the last component is never followed. Hardlink
 * targets are resolved the same way and must exist and not be directories.
 * Nothing outside `root` is created, changed or removed.
 *
 * Errors: CORRUPT (bad compressed data, malformed or truncated tar, invalid
 * entries: a symlink loop, a path through a file, a missing hardlink
 * target, a bad whiteout), UNSUPPORTED (sparse files, unknown entry types,
 * non-UTF-8 names), DIGEST_MISMATCH (diffID), CANCELLED (signal), and
 * translated filesystem errors (UNAVAILABLE for a full disk or I/O error).
 * On error `root` may be left partly applied: the caller discards it (a
 * snapshot is never committed then).
 *
 * Runs as root: creating device nodes, setting ownership and trusted.*
 * xattrs need it.
 */
export async function applyLayer(root: string, blob: Readable, opts: ApplyOptions): Promise<ApplyResult> {
  const { signal } = opts;
  const logger = opts.logger ?? nullLogger;
  const alg = opts.diffId ? digestAlgorithm(opts.diffId) : 'sha256';
  const hash = createHash(alg);
  let size = 0;
  let entries = 0;
  const started = performance.now();
  const dir = resolve(root);
  if (signal?.aborted) {
    blob.destroy();
    throw new BerthError('CANCELLED', `applying a layer to ${root} was cancelled before it started`, { cause: signal.reason });
  }
  if (!lstatSync(dir, { throwIfNoEntry: false })?.isDirectory()) {
    blob.destroy();
    throw new BerthError('NOT_FOUND', `cannot apply a layer to ${root}: not a directory`, { details: { root } });
  }
  const source = decompress(blob, opts.compression);
  const onAbort = (): void => source.close();
  signal?.addEventListener('abort', onAbort, { once: true });
  const counted = (async function* () {
    for await (const chunk of source.chunks) {
      hash.update(chunk);
      size += chunk.length;
      yield chunk;
    }
  })();
  try {
    const reader = new TarReader(counted);
    const writer = new LayerWriter(dir, logger);
    for (let entry = await reader.next(); entry; entry = await reader.next()) {
      if (signal?.aborted) break;
      await writer.apply(entry, reader);
      entries++;
    }
    if (signal?.aborted) throw signal.reason;
    await reader.drain();
    writer.finish();
    const found = `${alg}:${hash.digest('hex')}` as Digest;
    if (opts.diffId && found !== opts.diffId) {
      throw new BerthError('DIGEST_MISMATCH', `layer: expected diffID ${opts.diffId}, found ${found}`, {
        details: { expected: opts.diffId, found },
        hint: 'the layer blob does not match the image config; the image is corrupt or was tampered with',
      });
    }
    logger.debug('layer tar applied', { root, diffId: found, entries, bytes: size, ms: Math.round(performance.now() - started) });
    return { diffId: found, size, entries };
  } catch (err) {
    if (signal?.aborted) throw new BerthError('CANCELLED', `applying a layer to ${root} was cancelled after ${entries} entries`, { cause: err });
    const failure = err instanceof BerthError ? err : fsError(err, `applying a layer to ${root}`);
    if ((failure.code === 'CORRUPT' || failure.code === 'UNSUPPORTED') && opts.compression !== 'none') {
      // Garbage from a damaged compressed stream looks like a bad tar. The
      // decompressor's own check (gzip's CRC, zstd's checksum) at the end
      // of the stream tells which it is, and its error is the one to report.
      const damaged = await decompressorFailure(counted);
      if (damaged) throw damaged;
    }
    throw failure;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    source.close();
  }
}

/** Reads what is left of the decompressed stream; the error it ends with, if any. */
async function decompressorFailure(rest: AsyncIterator<Buffer>): Promise<unknown> {
  try {
    while (!(await rest.next()).done);
    return undefined;
  } catch (err) {
    return err;
  }
}

const WHITEOUT = '.wh.';
const OPAQUE = '.wh..wh..opq';
const META = '.wh..wh.';
const FILE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
const DEVICE_KINDS = { char: 'char', block: 'block', fifo: 'fifo' } as const;

/** Applies entries one by one; holds what the changeset rules need to remember within a layer. */
class LayerWriter {
  private readonly scope: RootScope;
  /** Real paths this layer created or touched: an opaque marker spares them. */
  private readonly unpacked = new Set<string>();
  /** Directories' [atime, mtime], set once everything is written. */
  private readonly dirTimes = new Map<string, [bigint, bigint]>();
  private readonly skippedXattrs = new Set<string>();

  constructor(
    root: string,
    private readonly logger: Logger,
  ) {
    this.scope = new RootScope(root, (real) => this.unpacked.add(real));
  }

  async apply(e: TarEntry, reader: TarReader): Promise<void> {
    const path = cleanPath(e.name);
    if (path === '') {
      this.logger.debug('layer entry for the root skipped', { name: e.name });
      return;
    }
    const [parent, base] = splitPath(path);
    try {
      if (base.startsWith(WHITEOUT)) return this.whiteout(e, path, parent, base);
      if (path.startsWith(META)) {
        this.logger.debug('AUFS metadata skipped', { name: e.name });
        return;
      }
      const real = joinPath(this.scope.dir(parent, true)!, base);
      await this.create(e, path, real, reader);
      this.unpacked.add(real);
    } catch (err) {
      throw fsError(err, `layer entry ${JSON.stringify(e.name)}`);
    }
  }

  /** Directory times last: writing children changes a directory's mtime. */
  finish(): void {
    for (const [real, [atime, mtime]] of this.dirTimes) {
      try {
        lutimens(this.scope.abs(real), atime, mtime);
      } catch (err) {
        // Removed or replaced later in this layer, together with an ancestor.
        if (errnoOf(err) !== 'ENOENT' && errnoOf(err) !== 'ENOTDIR') throw fsError(err, `setting the times of ${real}`);
      }
    }
  }

  private whiteout(e: TarEntry, path: string, parent: string, base: string): void {
    // Missing parents are created, as containerd does (an opaque marker in a directory the layer does not list still makes it exist).
    const dir = this.scope.dir(parent, true)!;
    if (base === OPAQUE) return this.opaque(dir);
    const name = base.slice(WHITEOUT.length);
    if (name === '' || name === '.' || name === '..') {
      throw new BerthError('CORRUPT', `layer entry ${JSON.stringify(e.name)} is not a valid whiteout`, { details: { name: e.name, offset: e.offset } });
    }
    if (name.startsWith(WHITEOUT)) {
      this.logger.debug('AUFS metadata skipped', { name: e.name, path });
      return;
    }
    this.remove(joinPath(dir, name));
  }

  /** Removes every entry under `dir` that this layer did not create or touch. */
  private opaque(dir: string): void {
    let removed = false;
    const walk = (real: string): void => {
      for (const d of readdirSync(this.scope.abs(real), { withFileTypes: true })) {
        const child = joinPath(real, d.name);
        if (!this.unpacked.has(child)) {
          rmSync(this.scope.abs(child), { recursive: true, force: true });
          this.dirTimes.delete(child);
          removed = true;
        } else if (d.isDirectory()) {
          walk(child);
        }
      }
    };
    walk(dir);
    if (removed) this.scope.invalidate();
  }

  /** Removes whatever is at `real` (a whole tree for a directory; a symlink itself, never its target). */
  private remove(real: string, st?: Stats): void {
    const abs = this.scope.abs(real);
    st ??= lstatSync(abs, { throwIfNoEntry: false });
    if (!st) return;
    if (st.isDirectory()) rmSync(abs, { recursive: true, force: true });
    else unlinkSync(abs);
    if (st.isDirectory() || st.isSymbolicLink()) this.scope.invalidate();
    this.dirTimes.delete(real);
  }

  /** Runs `make`; if something is in the way, removes it and runs `make` again. */
  private replacing<T>(real: string, make: () => T): T {
    try {
      return make();
    } catch (err) {
      if (errnoOf(err) !== 'EEXIST') throw err;
    }
    this.remove(real);
    return make();
  }

  private async create(e: TarEntry, path: string, real: string, reader: TarReader): Promise<void> {
    const abs = this.scope.abs(real);
    const mtime = boundTime(e.mtime);
    const atime = e.atime !== undefined && boundTime(e.atime) > mtime ? boundTime(e.atime) : mtime;
    if (!validId(e.uid) || !validId(e.gid)) {
      throw new BerthError('CORRUPT', `layer entry ${JSON.stringify(e.name)} has owner ${e.uid}:${e.gid}, outside the range of Linux ids`, { details: { name: e.name, offset: e.offset } });
    }
    switch (e.kind) {
      case 'directory': {
        try {
          mkdirSync(abs, e.mode & 0o777);
        } catch (err) {
          if (errnoOf(err) !== 'EEXIST') throw err;
          const st = lstatSync(abs);
          if (!st.isDirectory()) {
            this.remove(real, st);
            mkdirSync(abs, e.mode & 0o777);
          }
        }
        lchownSync(abs, e.uid, e.gid);
        chmodSync(abs, e.mode & 0o7777);
        this.xattrs(abs, e);
        this.dirTimes.delete(real);
        this.dirTimes.set(real, [atime, mtime]);
        this.scope.remember(path, real);
        return;
      }
      case 'file': {
        const fd = this.replacing(real, () => openSync(abs, FILE_FLAGS, e.mode & 0o777));
        try {
          for (let piece = await reader.read(); piece; piece = await reader.read()) writeAll(fd, piece);
          fchownSync(fd, e.uid, e.gid);
          fchmodSync(fd, e.mode & 0o7777);
          futimens(fd, atime, mtime);
        } finally {
          closeSync(fd);
        }
        this.xattrs(abs, e);
        return;
      }
      case 'symlink': {
        if (e.linkname === '') throw new BerthError('CORRUPT', `layer entry ${JSON.stringify(e.name)} is a symlink with an empty target`, { details: { name: e.name, offset: e.offset } });
        this.replacing(real, () => symlinkSync(e.linkname, abs));
        lchownSync(abs, e.uid, e.gid);
        this.xattrs(abs, e);
        lutimens(abs, atime, mtime);
        return;
      }
      case 'link':
        return this.hardlink(e, real, abs);
      case 'char':
      case 'block':
      case 'fifo': {
        this.replacing(real, () => mknod(abs, DEVICE_KINDS[e.kind as keyof typeof DEVICE_KINDS], e.mode & 0o777, e.devmajor, e.devminor));
        lchownSync(abs, e.uid, e.gid);
        chmodSync(abs, e.mode & 0o7777);
        this.xattrs(abs, e);
        lutimens(abs, atime, mtime);
        return;
      }
    }
  }

  private hardlink(e: TarEntry, real: string, abs: string): void {
    const invalid = (why: string): BerthError =>
      new BerthError('CORRUPT', `layer entry ${JSON.stringify(e.name)}: hardlink target ${JSON.stringify(e.linkname)} ${why}`, {
        details: { name: e.name, linkname: e.linkname, offset: e.offset },
      });
    const target = cleanPath(e.linkname);
    if (target === '') throw invalid('is the root directory');
    const [parent, base] = splitPath(target);
    const dir = this.scope.dir(parent, false);
    if (dir === undefined) throw invalid('does not exist');
    const targetReal = joinPath(dir, base);
    const targetStat = lstatSync(this.scope.abs(targetReal), { throwIfNoEntry: false });
    if (!targetStat) throw invalid('does not exist');
    if (targetStat.isDirectory()) throw invalid('is a directory');
    if (targetReal === real) return;
    try {
      linkSync(this.scope.abs(targetReal), abs);
      return;
    } catch (err) {
      if (errnoOf(err) !== 'EEXIST') throw err;
    }
    const st = lstatSync(abs);
    if (st.ino === targetStat.ino && st.dev === targetStat.dev) return;
    this.remove(real, st);
    linkSync(this.scope.abs(targetReal), abs);
  }

  private xattrs(abs: string, e: TarEntry): void {
    if (!e.xattrs) return;
    for (const [name, value] of e.xattrs) {
      if (!xattrAllowed(name)) {
        if (!this.skippedXattrs.has(name)) this.logger.warn('layer xattr skipped: berth does not apply this namespace', { xattr: name, name: e.name });
        this.skippedXattrs.add(name);
        continue;
      }
      try {
        lsetxattr(abs, name, value);
      } catch (err) {
        const errno = errnoOf(err);
        // The filesystem has no xattrs of this kind, or (EPERM) user.* on a symlink or device, which Linux refuses; containerd ignores both.
        const unsupported = errno === 'ENOTSUP' || errno === 'EOPNOTSUPP' || (errno === 'EPERM' && name.startsWith('user.') && e.kind !== 'file' && e.kind !== 'directory');
        if (!unsupported) throw err;
        if (!this.skippedXattrs.has(name)) this.logger.warn('layer xattr not supported here, skipped', { xattr: name, name: e.name, errno });
        this.skippedXattrs.add(name);
      }
    }
  }
}

/**
 * trusted.overlay.* is refused: those attributes steer overlayfs (opaque
 * directories, redirects to other paths), and a layer must not set them.
 * security.* other than capabilities (SELinux, IMA labels) belongs to the
 * host's policy, not to an image.
 */
function xattrAllowed(name: string): boolean {
  if (name.startsWith('user.')) return true;
  if (name.startsWith('trusted.')) return !name.startsWith('trusted.overlay.');
  return name === 'security.capability' || name === 'system.posix_acl_access' || name === 'system.posix_acl_default';
}

/** Times before the epoch or past 2262 become the epoch, as containerd's boundTime does. */
function boundTime(ns: bigint): bigint {
  return ns >= 0n && ns < 2n ** 63n ? ns : 0n;
}

/** uid and gid are 32 bits, and 2^32-1 means "unchanged" to chown. */
function validId(id: number): boolean {
  return Number.isInteger(id) && id >= 0 && id < 2 ** 32 - 1;
}

function writeAll(fd: number, buf: Buffer): void {
  let off = 0;
  while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
}

/** A node:fs or linux/ error as a BerthError that names where it happened; other BerthErrors pass unchanged. */
function fsError(err: unknown, where: string): BerthError {
  const errno = errnoOf(err);
  if (err instanceof BerthError && errno === undefined) return err;
  const text = err instanceof Error ? err.message : String(err);
  let code: ErrorCode = 'INTERNAL';
  let hint: string | undefined;
  switch (errno) {
    case 'ENOSPC':
    case 'EDQUOT':
      code = 'UNAVAILABLE';
      hint = 'the filesystem is full: free space (berth gc removes unused content and snapshots) and retry';
      break;
    case 'EIO':
      code = 'UNAVAILABLE';
      hint = 'the disk reported an I/O error; check it';
      break;
    case 'EPERM':
    case 'EACCES':
    case 'EROFS':
      code = 'FAILED_PRECONDITION';
      hint = 'applying layers needs root and a writable filesystem';
      break;
    case 'ENAMETOOLONG':
    case 'ENOTDIR':
    case 'ELOOP':
    case 'EINVAL':
    case 'EMLINK':
    case 'EISDIR':
      code = 'CORRUPT';
      break;
  }
  return new BerthError(code, `${where}: ${text}`, { cause: err, hint, details: errno ? { errno } : {} });
}
