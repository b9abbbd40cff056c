import { closeSync, fstatSync, ftruncateSync, mkdirSync, openSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { tryLockExclusive, unlock } from '../linux/index.js';
import { BerthError } from '../errors.js';

/**
 * lock/ — exclusive locks between berth processes on one host (the one
 * writer of a state directory, one operation per container at a time),
 * on flock(2): the kernel releases a lock when its holder exits or is
 * killed, so no lock is ever stale and none needs breaking. The holder
 * writes who it is into the file, so a waiter that gives up can name it.
 * Each acquire opens the file anew, and flock locks belong to the open
 * file, so two acquires in one process exclude each other too; within a
 * process they also queue, so a release wakes the next at once.
 */

export interface LockHolder {
  pid: number;
  /** What the holder is doing, e.g. "berth daemon" or "berth rm web". */
  what: string;
  since: string;
}

export interface Lock {
  /**
   * Lets go of the lock. With `remove`, its file goes first, while still
   * held: for a lock of something that no longer exists (a removed
   * container), whose files would otherwise pile up, one per name ever used.
   * A waiter that had opened the removed file finds it gone once it gets it,
   * and takes the file at the path instead (acquireLock).
   */
  release(opts?: { remove?: boolean }): Promise<void>;
}

export interface AcquireOptions {
  /** Who we are, written into the file for waiters' messages. */
  holder: Omit<LockHolder, 'since'>;
  /** 0 = fail at once when held. */
  timeoutMs: number;
  /** Names the lock in messages, e.g. `container "web"`. */
  what: string;
  signal?: AbortSignal;
}

/** Another process's hold is polled for: first soon, then every POLL_MAX_MS. */
const POLL_FIRST_MS = 1;
const POLL_MAX_MS = 20;

/**
 * This process's holders and waiters, by path: the tail of the queue. A
 * waiter in this process is woken by the release itself, not by polling,
 * and only then tries flock(2) for other processes' holds.
 */
const queues = new Map<string, Promise<void>>();

/** Takes the lock at `path` (created 0600, its directory 0700), waiting up to timeoutMs; LOCKED naming the holder otherwise. */
export async function acquireLock(path: string, opts: AcquireOptions): Promise<Lock> {
  const deadline = Date.now() + opts.timeoutMs;
  const ahead = queues.get(path);
  let leave!: () => void;
  const gate = new Promise<void>((resolve) => (leave = resolve));
  const tail = ahead ? ahead.then(() => gate) : gate;
  queues.set(path, tail);
  // Leaving (released, or given up) lets the next waiter of this process go once those ahead are done.
  const done = (): void => {
    leave();
    void tail.then(() => queues.get(path) === tail && queues.delete(path));
  };
  try {
    if (ahead) await waitInLine(ahead, deadline, path, opts);
    // The directory of a lock is state: owner-only. The file operations are synchronous: locks live
    // under --state (a tmpfs, /run/berth), where each takes microseconds, while each trip through
    // libuv's thread pool costs ~0.1 ms, and a lock taken and released made six.
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    let fd: number;
    for (;;) {
      fd = openSync(path, 'a+', 0o600);
      try {
        for (let wait = POLL_FIRST_MS; !tryLockExclusive(fd, path); wait = Math.min(wait * 2, POLL_MAX_MS)) {
          if (opts.signal?.aborted) throw cancelled(opts);
          if (Date.now() >= deadline) throw await lockedError(path, opts);
          await new Promise((r) => setTimeout(r, wait));
        }
      } catch (err) {
        closeSync(fd);
        throw err;
      }
      // The holder before may have removed the file it released (release({ remove })): a lock on that
      // file excludes no one who opens the path now. Then the path's file is the lock.
      if (isFileAt(fd, path)) break;
      closeSync(fd);
    }
    try {
      const holder: LockHolder = { ...opts.holder, since: new Date().toISOString() };
      ftruncateSync(fd, 0);
      writeSync(fd, JSON.stringify(holder) + '\n', 0);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    let released = false;
    return {
      async release(how = {}) {
        if (released) return;
        released = true;
        // Failing either leaves only a file, or a stale holder note; the unlock below is what matters.
        if (how.remove) ignoreErrors(() => unlinkSync(path));
        ignoreErrors(() => ftruncateSync(fd, 0));
        unlock(fd);
        closeSync(fd);
        done();
      },
    };
  } catch (err) {
    done();
    throw err;
  }
}

function ignoreErrors(fn: () => void): void {
  try {
    fn();
  } catch {
    // see the caller
  }
}

/** Whether open file `fd` is the file at `path` now (not one removed or replaced since it was opened). */
function isFileAt(fd: number, path: string): boolean {
  const open = fstatSync(fd);
  const now = statSync(path, { throwIfNoEntry: false });
  return now !== undefined && now.ino === open.ino && now.dev === open.dev;
}

/** Waits for this process's holders and waiters ahead on `path`, within the deadline and the signal. */
async function waitInLine(ahead: Promise<void>, deadline: number, path: string, opts: AcquireOptions): Promise<void> {
  if (opts.signal?.aborted) throw cancelled(opts);
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  try {
    const outcome = await Promise.race([
      ahead.then(() => 'free' as const),
      new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), Math.max(0, deadline - Date.now())))),
      new Promise<'aborted'>((resolve) => opts.signal?.addEventListener('abort', (onAbort = () => resolve('aborted')), { once: true })),
    ]);
    if (outcome === 'aborted') throw cancelled(opts);
    if (outcome === 'timeout') throw await lockedError(path, opts);
  } finally {
    clearTimeout(timer);
    if (onAbort) opts.signal?.removeEventListener('abort', onAbort);
  }
}

function cancelled(opts: AcquireOptions): BerthError {
  return new BerthError('CANCELLED', `${opts.what}: gave up waiting for the lock`);
}

/** The holder written in the lock file, if any (a lock file without a holder is free or being taken). */
export async function lockHolder(path: string): Promise<LockHolder | undefined> {
  const text = await readFile(path, 'utf8').catch(() => '');
  try {
    return text.trim() ? (JSON.parse(text) as LockHolder) : undefined;
  } catch {
    return undefined;
  }
}

async function lockedError(path: string, opts: AcquireOptions): Promise<BerthError> {
  const h = await lockHolder(path);
  const who = h ? `${h.what} (pid ${h.pid}, since ${h.since})` : 'another process';
  return new BerthError('LOCKED', `${opts.what} is locked by ${who}`, {
    hint: opts.timeoutMs > 0 ? `it was still held after ${opts.timeoutMs} ms; wait for it to finish, or raise --timeout` : 'wait for it to finish, or pass --timeout',
    details: { lock: path, ...(h ? { holderPid: h.pid, holder: h.what } : {}) },
  });
}
