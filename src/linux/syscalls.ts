import { closeSync, constants as fsConstants, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import { constants as osConstants } from 'node:os';
import type koffiModule from 'koffi';
import { BerthError, type ErrorCode } from '../errors.js';

type Koffi = typeof koffiModule;
type Fn = ReturnType<ReturnType<Koffi['load']>['func']>;

interface Libc {
  koffi: Koffi;
  longBytes: number;
  mknod: Fn;
  lsetxattr: Fn;
  lgetxattr: Fn;
  llistxattr: Fn;
  syncfs: Fn;
  futimens: Fn;
  utimensat: Fn;
  mount: Fn;
  umount2: Fn;
}

let libc: Libc | undefined;

function load(): Libc {
  if (libc) return libc;
  const koffi = createRequire(import.meta.url)('koffi') as Koffi;
  // The process's own symbols include the C library Node is linked with (glibc or musl).
  const c = koffi.load(null);
  libc = {
    koffi,
    longBytes: koffi.sizeof('long'),
    // mode_t is 32 bits and dev_t 64 bits on Linux; ssize_t is as wide as long.
    mknod: c.func('int mknod(const char *path, uint32_t mode, uint64_t dev)'),
    lsetxattr: c.func('int lsetxattr(const char *path, const char *name, const void *value, size_t size, int flags)'),
    lgetxattr: c.func('long lgetxattr(const char *path, const char *name, _Out_ void *value, size_t size)'),
    llistxattr: c.func('long llistxattr(const char *path, _Out_ void *list, size_t size)'),
    syncfs: c.func('int syncfs(int fd)'),
    // struct timespec[2] passed as four longs: tv_sec and tv_nsec are both long on Linux's LP64 and classic ILP32 ABIs.
    futimens: c.func('int futimens(int fd, const void *times)'),
    utimensat: c.func('int utimensat(int dirfd, const char *path, const void *times, int flags)'),
    mount: c.func('int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const char *data)'),
    umount2: c.func('int umount2(const char *target, int flags)'),
  };
  return libc;
}

const ERRNO_NAMES = new Map(Object.entries(osConstants.errno).map(([name, n]) => [n, name]));

function codeFor(errno: string): ErrorCode {
  switch (errno) {
    case 'ENOENT':
      return 'NOT_FOUND';
    case 'EEXIST':
      return 'ALREADY_EXISTS';
    case 'ENOTSUP':
    case 'EOPNOTSUPP':
      return 'UNSUPPORTED';
    case 'EPERM':
    case 'EACCES':
    case 'EROFS':
      return 'FAILED_PRECONDITION';
    case 'ENOSPC':
    case 'EDQUOT':
    case 'EIO':
      return 'UNAVAILABLE';
    case 'EINVAL':
    case 'E2BIG':
    case 'ERANGE':
    case 'ENAMETOOLONG':
    case 'ENOTDIR':
    case 'ELOOP':
      return 'INVALID_ARGUMENT';
    default:
      return 'INTERNAL';
  }
}

function fail(syscall: string, errno: number, path: string, extra: Record<string, unknown> = {}): BerthError {
  const name = ERRNO_NAMES.get(errno) ?? `errno ${errno}`;
  const what = 'name' in extra ? ` ${String(extra.name)}` : '';
  return new BerthError(codeFor(name), `${syscall}${what} on ${path}: ${name}`, { details: { syscall, errno: name, path, ...extra } });
}

/**
 * The errno name ("ENOENT") of a failure from this module (details.errno) or
 * from node:fs (code), so callers can branch on it without reading messages.
 */
export function errnoOf(err: unknown): string | undefined {
  if (err instanceof BerthError) return typeof err.details.errno === 'string' ? err.details.errno : undefined;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && code.startsWith('E') ? code : undefined;
}

export type DeviceType = 'char' | 'block' | 'fifo';

const S_IFMT: Record<DeviceType, number> = { char: 0o020000, block: 0o060000, fifo: 0o010000 };

/** glibc's makedev(): the 64-bit dev_t layout of Linux. */
function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major >>> 0);
  const mi = BigInt(minor >>> 0);
  return ((ma & 0xfffff000n) << 32n) | ((ma & 0xfffn) << 8n) | ((mi & 0xffffff00n) << 12n) | (mi & 0xffn);
}

/** Creates a device node or FIFO at `path` (not following a symlink there: mknod never does). `mode` is the permission bits; the umask applies. */
export function mknod(path: string, type: DeviceType, mode: number, major = 0, minor = 0): void {
  const c = load();
  if (c.mknod(path, S_IFMT[type] | (mode & 0o7777), type === 'fifo' ? 0n : makedev(major, minor)) !== 0) {
    throw fail('mknod', c.koffi.errno(), path);
  }
}

/** Sets extended attribute `name` of `path` itself (a symlink is not followed). */
export function lsetxattr(path: string, name: string, value: Buffer): void {
  const c = load();
  if (c.lsetxattr(path, name, value, value.length, 0) !== 0) throw fail('lsetxattr', c.koffi.errno(), path, { name });
}

/** The value of extended attribute `name` of `path` itself, or undefined when it has none. */
export function lgetxattr(path: string, name: string): Buffer | undefined {
  const c = load();
  for (;;) {
    const size = Number(c.lgetxattr(path, name, null, 0));
    if (size < 0) {
      const errno = c.koffi.errno();
      if (ERRNO_NAMES.get(errno) === 'ENODATA') return undefined;
      throw fail('lgetxattr', errno, path, { name });
    }
    const buf = Buffer.alloc(size);
    const n = size === 0 ? 0 : Number(c.lgetxattr(path, name, buf, size));
    if (n >= 0) return buf.subarray(0, n);
    const errno = c.koffi.errno();
    if (ERRNO_NAMES.get(errno) !== 'ERANGE') throw fail('lgetxattr', errno, path, { name });
    // The value grew between the two calls: ask again.
  }
}

/** The names of the extended attributes of `path` itself, in the order the filesystem lists them. */
export function llistxattr(path: string): string[] {
  const c = load();
  for (;;) {
    const size = Number(c.llistxattr(path, null, 0));
    if (size < 0) throw fail('llistxattr', c.koffi.errno(), path);
    if (size === 0) return [];
    const buf = Buffer.alloc(size);
    const n = Number(c.llistxattr(path, buf, size));
    if (n >= 0) return buf.subarray(0, n).toString('utf8').split('\0').filter((s) => s !== '');
    const errno = c.koffi.errno();
    if (ERRNO_NAMES.get(errno) !== 'ERANGE') throw fail('llistxattr', errno, path);
  }
}

const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
const NS = 1_000_000_000n;

let times: BigInt64Array | Int32Array | undefined;

/** struct timespec[2] {atime, mtime} in the width of the C library's long; one buffer, as every call is synchronous. */
function timespecs(c: Libc, atimeNs: bigint, mtimeNs: bigint): BigInt64Array | Int32Array {
  const parts = [atimeNs / NS, atimeNs % NS, mtimeNs / NS, mtimeNs % NS] as const;
  times ??= c.longBytes === 8 ? new BigInt64Array(4) : new Int32Array(4);
  if (times instanceof BigInt64Array) times.set(parts);
  else times.set(parts.map(Number));
  return times;
}

/**
 * Sets the access and modification times of the open file `fd`, to the
 * nanosecond (Node's futimes takes a double of seconds and rounds).
 * Times are nanoseconds since the epoch, not negative.
 */
export function futimens(fd: number, atimeNs: bigint, mtimeNs: bigint): void {
  const c = load();
  if (c.futimens(fd, timespecs(c, atimeNs, mtimeNs)) !== 0) throw fail('futimens', c.koffi.errno(), `fd ${fd}`);
}

/** The same for `path` itself: a symlink's own times, not its target's. */
export function lutimens(path: string, atimeNs: bigint, mtimeNs: bigint): void {
  const c = load();
  if (c.utimensat(AT_FDCWD, path, timespecs(c, atimeNs, mtimeNs), AT_SYMLINK_NOFOLLOW) !== 0) throw fail('utimensat', c.koffi.errno(), path);
}

/**
 * Flushes every dirty file of the filesystem holding `path` (syncfs(2) on a
 * descriptor of it). Runs on a worker thread: a sync can take seconds and
 * must not stall the event loop.
 */
export async function syncfs(path: string): Promise<void> {
  const c = load();
  let fd: number;
  try {
    fd = openSync(path, fsConstants.O_RDONLY);
  } catch (err) {
    const errno = (err as NodeJS.ErrnoException).errno;
    throw fail('open', typeof errno === 'number' ? -errno : 0, path);
  }
  try {
    const res = await new Promise<number>((resolve, reject) => c.syncfs.async(fd, (err: unknown, r: number) => (err ? reject(err) : resolve(r))));
    // koffi carries the worker thread's errno back to the callback.
    if (res !== 0) throw fail('syncfs', c.koffi.errno(), path);
  } finally {
    closeSync(fd);
  }
}

/** Runs `fn` with koffi's `.async` on a worker thread; resolves with its result and the errno it left. */
function onWorker(fn: Fn, ...args: unknown[]): Promise<{ res: number; errno: number }> {
  const c = load();
  return new Promise((resolve, reject) =>
    fn.async(...args, (err: unknown, res: number) => (err ? reject(err) : resolve({ res, errno: res === 0 ? 0 : c.koffi.errno() }))),
  );
}

/**
 * mount(2): `flags` are MS_* bits, `data` the filesystem's option string.
 * On a worker thread: mounting can wait on the filesystem. A failure names
 * the target and the errno; the caller adds what the kernel logged.
 */
export async function mount(source: string, target: string, fstype: string | null, flags: number, data: string | null): Promise<void> {
  const c = load();
  const { res, errno } = await onWorker(c.mount, source, target, fstype, flags, data);
  if (res !== 0) throw fail('mount', errno, target, { source, fstype });
}

/** umount2(2) with MNT_* `flags` (MNT_DETACH = 2 for a lazy unmount). On a worker thread: an unmount may flush. */
export async function umount2(target: string, flags: number): Promise<void> {
  const c = load();
  const { res, errno } = await onWorker(c.umount2, target, flags);
  if (res !== 0) throw fail('umount2', errno, target);
}
