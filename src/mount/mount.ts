import { mkdir, mkdtemp, readFile, realpath, rmdir } from 'node:fs/promises';
import { isAbsolute, join, resolve, sep } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BerthError } from '../errors.js';
import { errnoOf, mount, runCommand, umount2 } from '../linux/index.js';
import { nullLogger, type Logger } from '../log.js';
import type { Mount } from '../oci/mount.js';

/**
 * Mounting and unmounting with mount(2) and umount2(2) (through linux/):
 * spawning util-linux's `mount` and `umount` cost a fork of this process
 * each, 0.3 s of a 1 GiB, 8-layer unpack.
 *
 * Long overlay option strings: mount(2) copies its data argument as one
 * page, so an overlay with many layers (128 lowerdirs of absolute paths)
 * does not fit. Snapshotters always return absolute paths; like containerd
 * (mount_linux.go, compactLowerdirOption), mountAll notices an overlay
 * option string above PAGE_SIZE - 512 bytes, rewrites the lowerdirs relative
 * to their longest common parent directory and runs util-linux `mount` with
 * that directory as its working directory (the kernel resolves relative lowerdirs
 * against the caller's cwd). So a Mount stays meaningful anywhere, and only
 * the code that calls mount(2) deals with the page limit. Paths in overlay
 * options must not contain ',' or ':' (the option syntax); snapshotters
 * refuse such roots.
 */

/** The smallest page size Linux runs with; larger pages only raise the limit. */
const PAGE_SIZE = 4096;
const COMPACT_ABOVE = PAGE_SIZE - 512;
/** How many times an unmount is tried while the target is busy (EBUSY), with a growing pause. */
const BUSY_ATTEMPTS = 6;
/** More mounts stacked on one target than this is not something berth made. */
const MAX_STACKED = 64;
/** mount(2) flags (linux/fs.h). */
const MS = {
  RDONLY: 1,
  NOSUID: 2,
  NODEV: 4,
  NOEXEC: 8,
  SYNCHRONOUS: 16,
  REMOUNT: 32,
  MANDLOCK: 64,
  DIRSYNC: 128,
  NOATIME: 1024,
  NODIRATIME: 2048,
  BIND: 4096,
  REC: 16384,
  UNBINDABLE: 1 << 17,
  PRIVATE: 1 << 18,
  SLAVE: 1 << 19,
  SHARED: 1 << 20,
  RELATIME: 1 << 21,
  STRICTATIME: 1 << 24,
} as const;
const MNT_DETACH = 2;

/**
 * Mounts `mounts` in order onto `target` (created when absent), each on top
 * of the previous one, like containerd's mount.All. When one fails, those
 * already mounted are unmounted again and the error names the mount type,
 * source, target and the kernel's message.
 */
export async function mountAll(mounts: readonly Mount[], target: string): Promise<void> {
  if (!isAbsolute(target)) throw new BerthError('INVALID_ARGUMENT', `mount target ${JSON.stringify(target)} must be an absolute path`);
  await mkdir(target, { recursive: true }).catch((err: unknown) => {
    throw new BerthError('FAILED_PRECONDITION', `cannot create mount target ${target}: ${(err as Error).message}`, { cause: err, details: { target } });
  });
  let mounted = 0;
  try {
    for (const m of mounts) {
      await mountOne(check(m), target);
      mounted++;
    }
  } catch (err) {
    for (; mounted > 0; mounted--) await umountOnce(target, false).catch(() => {});
    throw err;
  }
}

/**
 * Unmounts everything mounted on `target` (mountAll may have stacked
 * several). A target that is not a mount point, or does not exist, is fine.
 * A busy target is retried a few times, then fails with FAILED_PRECONDITION;
 * `lazy` detaches it at once instead (umount -l): the kernel finishes the
 * unmount when the last file open in it is closed.
 */
export async function unmount(target: string, opts: { lazy?: boolean } = {}): Promise<void> {
  const path = resolve(target);
  for (let n = 0; n < MAX_STACKED && (await isMountPoint(path)); n++) await umountOnce(path, opts.lazy ?? false);
}

/**
 * Mounts `mounts` on a fresh directory under `parent`, runs fn with it, and
 * always unmounts and removes the directory afterwards, also when fn throws.
 * Should fn leave a file open in the mount, the mount is detached lazily.
 * The directory is removed with rmdir only, never recursively, so nothing
 * behind a mount that is somehow still there is ever deleted.
 */
export async function withMounts<T>(mounts: readonly Mount[], parent: string, fn: (dir: string) => Promise<T>, opts: { logger?: Logger } = {}): Promise<T> {
  const logger = opts.logger ?? nullLogger;
  await mkdir(parent, { recursive: true, mode: 0o700 });
  const dir = await mkdtemp(join(resolve(parent), 'mnt-'));
  let done = false;
  try {
    await mountAll(mounts, dir);
    const value = await fn(dir);
    done = true;
    return value;
  } finally {
    try {
      await unmount(dir).catch(() => unmount(dir, { lazy: true }));
      await rmdir(dir);
    } catch (err) {
      if (done) throw err; // fn succeeded: the failed cleanup is the error to report
      logger.warn('could not unmount or remove a temporary mount point', { dir, error: String(err) });
    }
  }
}

/** Whether something is mounted on `path` (per /proc/self/mountinfo); false when it does not exist. */
export async function isMountPoint(path: string): Promise<boolean> {
  let real: string;
  try {
    real = await realpath(path);
  } catch {
    return false;
  }
  return (await mountPoints()).includes(real);
}

/** The mount points of this process's mount namespace, decoded, in mountinfo order. */
export async function mountPoints(): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  const out: string[] = [];
  for (const line of info.split('\n')) {
    const field = line.split(' ')[4];
    if (field) out.push(field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
  }
  return out;
}

function check(m: Mount): Mount {
  const bad = (why: string) => new BerthError('INVALID_ARGUMENT', `invalid mount ${JSON.stringify(m)}: ${why}`);
  if (typeof m !== 'object' || m === null) throw bad('not an object');
  if (typeof m.type !== 'string' || m.type === '') throw bad('type must be a non-empty string');
  if (typeof m.source !== 'string') throw bad('source must be a string');
  if (!Array.isArray(m.options) || m.options.some((o) => typeof o !== 'string' || o === '' || o.includes(','))) {
    throw bad('options must be non-empty strings without commas');
  }
  return m;
}

const isBind = (m: Mount) => m.type === 'bind' || m.options.includes('bind') || m.options.includes('rbind');

/** Mount options that are flags of mount(2) rather than filesystem data: util-linux's table (and containerd's). */
const FLAGS: Record<string, { set: boolean; flag: number }> = {
  ro: { set: true, flag: MS.RDONLY },
  rw: { set: false, flag: MS.RDONLY },
  nosuid: { set: true, flag: MS.NOSUID },
  suid: { set: false, flag: MS.NOSUID },
  nodev: { set: true, flag: MS.NODEV },
  dev: { set: false, flag: MS.NODEV },
  noexec: { set: true, flag: MS.NOEXEC },
  exec: { set: false, flag: MS.NOEXEC },
  sync: { set: true, flag: MS.SYNCHRONOUS },
  async: { set: false, flag: MS.SYNCHRONOUS },
  dirsync: { set: true, flag: MS.DIRSYNC },
  remount: { set: true, flag: MS.REMOUNT },
  mand: { set: true, flag: MS.MANDLOCK },
  nomand: { set: false, flag: MS.MANDLOCK },
  noatime: { set: true, flag: MS.NOATIME },
  atime: { set: false, flag: MS.NOATIME },
  nodiratime: { set: true, flag: MS.NODIRATIME },
  diratime: { set: false, flag: MS.NODIRATIME },
  relatime: { set: true, flag: MS.RELATIME },
  norelatime: { set: false, flag: MS.RELATIME },
  strictatime: { set: true, flag: MS.STRICTATIME },
  nostrictatime: { set: false, flag: MS.STRICTATIME },
  bind: { set: true, flag: MS.BIND },
  rbind: { set: true, flag: MS.BIND | MS.REC },
};

/** Propagation options: each takes a mount(2) call of its own after the mount. */
const PROPAGATION: Record<string, number> = {
  private: MS.PRIVATE,
  rprivate: MS.PRIVATE | MS.REC,
  shared: MS.SHARED,
  rshared: MS.SHARED | MS.REC,
  slave: MS.SLAVE,
  rslave: MS.SLAVE | MS.REC,
  unbindable: MS.UNBINDABLE,
  runbindable: MS.UNBINDABLE | MS.REC,
};

/** A Mount's options split into mount(2) flags, propagation changes and the filesystem's data string. */
function parseOptions(options: readonly string[]): { flags: number; propagation: number[]; data: string[] } {
  let flags = 0;
  const propagation: number[] = [];
  const data: string[] = [];
  for (const o of options) {
    const f = FLAGS[o];
    if (f) flags = f.set ? flags | f.flag : flags & ~f.flag;
    else if (PROPAGATION[o] !== undefined) propagation.push(PROPAGATION[o]);
    else data.push(o);
  }
  return { flags, propagation, data };
}

async function mountOne(m: Mount, target: string): Promise<void> {
  const { flags, propagation, data } = parseOptions(m.options);
  if (isBind(m)) {
    // A bind mount ignores flags such as ro; they take a remount of the bind.
    const bind = MS.BIND | (flags & MS.REC);
    await sysMount(m, target, m.source, null, bind, null);
    try {
      const rest = flags & ~(MS.BIND | MS.REC);
      if (rest !== 0) await sysMount(m, target, '', null, MS.REMOUNT | MS.BIND | rest, null);
      for (const p of propagation) await sysMount(m, target, '', null, p, null);
    } catch (err) {
      await umountOnce(target, false).catch(() => {});
      throw err;
    }
    return;
  }
  if (m.type === 'overlay' && m.options.join(',').length > COMPACT_ABOVE) {
    const { options, cwd } = compactLowerdirs(m);
    if (options.length >= PAGE_SIZE) {
      throw new BerthError('INVALID_ARGUMENT', `overlay on ${target}: its options are ${options.length} bytes even with relative lowerdirs, over the kernel's ${PAGE_SIZE}-byte limit`, {
        hint: 'the image has too many layers for one overlay mount',
        details: { target, lowerdirs: lowerdirsOf(m).length },
      });
    }
    // Relative lowerdirs resolve against the caller's working directory, which
    // is the whole process's: util-linux mount runs in that directory instead.
    if (cwd) return runMount(m, target, ['-t', m.type, '-o', options, m.source || m.type, target], cwd);
  }
  const options = data.join(',');
  await sysMount(m, target, m.source || m.type, m.type, flags, options || null);
  try {
    for (const p of propagation) await sysMount(m, target, '', null, p, null);
  } catch (err) {
    await umountOnce(target, false).catch(() => {});
    throw err;
  }
}

/**
 * mount(2), failures as FAILED_PRECONDITION naming the mount and what the
 * kernel said (its log for overlay, else the errno).
 */
async function sysMount(m: Mount, target: string, source: string, type: string | null, flags: number, data: string | null): Promise<void> {
  const since = await uptime();
  try {
    await mount(source, target, type, flags, data);
  } catch (err) {
    const errno = errnoOf(err) ?? 'unknown error';
    const kernel = await kernelMessages(m.type, since);
    const said = kernel.length > 0 ? kernel.join('; ') : errno;
    const what = m.type === 'overlay' ? `overlay (${lowerdirsOf(m).length} lowerdirs)` : `${m.type} ${m.source}`;
    throw new BerthError('FAILED_PRECONDITION', `mount ${what} on ${target} failed: ${said}`, {
      cause: err,
      hint: mountHint(m),
      details: { type: m.type, source: m.source, target, options: m.options, errno, kernel },
    });
  }
}

function mountHint(m: Mount): string {
  return m.type === 'overlay'
    ? 'check that every lowerdir, upperdir and workdir exists, upperdir and workdir share one filesystem, and that filesystem can hold overlay upper directories (overlay on overlay cannot)'
    : 'mounting needs root (CAP_SYS_ADMIN) and a kernel that supports the filesystem type';
}

function lowerdirsOf(m: Mount): string[] {
  const opt = m.options.find((o) => o.startsWith('lowerdir='));
  return opt ? opt.slice('lowerdir='.length).split(':') : [];
}

/** The overlay's options with lowerdirs relative to their longest common parent directory, which becomes the cwd. */
function compactLowerdirs(m: Mount): { options: string; cwd?: string } {
  const lowers = lowerdirsOf(m);
  const full = m.options.join(',');
  if (lowers.length < 2 || !lowers.every(isAbsolute)) return { options: full };
  let common = lowers[0]!.split(sep).slice(0, -1);
  for (const l of lowers.slice(1)) {
    const parts = l.split(sep);
    let i = 0;
    while (i < common.length && i < parts.length - 1 && common[i] === parts[i]) i++;
    common = common.slice(0, i);
  }
  const cwd = common.join(sep);
  if (cwd === '') return { options: full }; // only "/" in common: nothing to gain
  const lowerdir = 'lowerdir=' + lowers.map((l) => l.slice(cwd.length + 1)).join(':');
  return { options: m.options.map((o) => (o.startsWith('lowerdir=') ? lowerdir : o)).join(','), cwd };
}

async function runMount(m: Mount, target: string, args: string[], cwd?: string): Promise<void> {
  const since = await uptime();
  const res = await runCommand('mount', args, cwd ? { cwd } : {});
  if (res.code === 0) return;
  const details = { type: m.type, source: m.source, target, options: m.options, ...(cwd ? { cwd } : {}), exitCode: res.code, stderr: res.stderr };
  if (res.code === undefined) {
    throw new BerthError('UNSUPPORTED', `cannot run mount for ${m.type} on ${target}: ${res.error?.message}`, {
      cause: res.error,
      hint: 'berth needs util-linux mount and umount on PATH',
      details,
    });
  }
  const kernel = await kernelMessages(m.type, since);
  const said = kernel.length > 0 ? kernel.join('; ') : firstLine(String(res.stderr));
  const source = m.type === 'overlay' ? `overlay (${lowerdirsOf(m).length} lowerdirs)` : `${m.type} ${m.source}`;
  throw new BerthError('FAILED_PRECONDITION', `mount ${source} on ${target} failed: ${said}`, {
    cause: res,
    hint: mountHint(m),
    details: { ...details, kernel },
  });
}

async function umountOnce(target: string, lazy: boolean): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    let err: unknown;
    try {
      await umount2(target, lazy ? MNT_DETACH : 0);
      return;
    } catch (e) {
      err = e;
    }
    if (!(await isMountPoint(target))) return; // not (or no longer) mounted: the state asked for
    const errno = errnoOf(err);
    if (errno !== 'EBUSY' || attempt >= BUSY_ATTEMPTS) {
      throw new BerthError('FAILED_PRECONDITION', `unmount ${target} failed: ${errno ?? String(err)}`, {
        cause: err,
        hint: errno === 'EBUSY' ? `a process may still use files under it (fuser -vm ${target}); stop it and retry` : 'unmounting needs root (CAP_SYS_ADMIN)',
        details: { target, errno, attempts: attempt },
      });
    }
    await sleep(25 * 2 ** attempt);
  }
}

function firstLine(s: string): string {
  return s.split('\n')[0]!.replace(/^(u?mount): /, '').trim();
}

/** Seconds since boot, the clock of kernel log timestamps (except across a suspend, where it only loses messages). */
async function uptime(): Promise<number> {
  try {
    return Number((await readFile('/proc/uptime', 'utf8')).split(' ')[0]);
  } catch {
    return Infinity;
  }
}

/**
 * What the kernel logged about a failed mount: mount(2) returns only an
 * errno, overlayfs says why in the kernel log ("overlayfs: failed to
 * resolve ...", "overlay: filesystem on ... not supported as upperdir").
 * Lines with `type`'s prefixes logged since `since`; none when the log
 * cannot be read.
 */
async function kernelMessages(type: string, since: number): Promise<string[]> {
  const prefixes = type === 'overlay' ? ['overlayfs: ', 'overlay: '] : [`${type}: `];
  const res = await runCommand('dmesg', ['-r']);
  if (res.code !== 0) return [];
  const out: string[] = [];
  for (const line of String(res.stdout).split('\n')) {
    const m = /^<\d+>\[\s*(\d+\.\d+)\] (.*)$/.exec(line);
    if (m && Number(m[1]) >= since - 0.05 && prefixes.some((p) => m[2]!.startsWith(p))) out.push(m[2]!);
  }
  return out.slice(-3);
}
