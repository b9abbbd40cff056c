import { createRequire } from 'node:module';
import { constants as osConstants } from 'node:os';
import type koffiModule from 'koffi';
import { BerthError } from '../errors.js';

/**
 * flock(2), non-blocking only: a blocking call would stall Node's event
 * loop, so waiting is the caller's loop. The kernel drops the lock when the
 * last descriptor of the open file closes, also when the process is killed:
 * a flock is never stale.
 */

const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;

let fn: ((fd: number, op: number) => number) | undefined;
let errno: (() => number) | undefined;

function load(): (fd: number, op: number) => number {
  if (fn) return fn;
  const koffi = createRequire(import.meta.url)('koffi') as typeof koffiModule;
  const f = koffi.load(null).func('int flock(int fd, int op)');
  errno = () => koffi.errno();
  fn = (fd, op) => f(fd, op) as number;
  return fn;
}

/** Takes an exclusive lock on open file `fd`: true when taken, false when another open file holds it. */
export function tryLockExclusive(fd: number, path: string): boolean {
  if (load()(fd, LOCK_EX | LOCK_NB) === 0) return true;
  const e = errno!();
  if (e === osConstants.errno.EWOULDBLOCK || e === osConstants.errno.EAGAIN) return false;
  throw new BerthError('INTERNAL', `flock on ${path}: errno ${e}`, { details: { syscall: 'flock', path } });
}

export function unlock(fd: number): void {
  load()(fd, LOCK_UN);
}
