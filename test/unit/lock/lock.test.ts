import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdir, readlink, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { isBerthError } from '../../../src/errors.js';
import { acquireLock, lockHolder, type AcquireOptions, type Lock } from '../../../src/lock/index.js';
import { withTempDir } from '../../helpers/tmp.js';

const LOCK_URL = new URL('../../../src/lock/index.js', import.meta.url).href;

const opts = (what: string, timeoutMs = 0): AcquireOptions => ({ holder: { pid: process.pid, what }, timeoutMs, what: 'state /x' });

/** A node child that takes the lock at path and prints "held"; it holds it until killed or until holdMs pass. */
function holderChild(path: string, what: string, holdMs = 60_000) {
  const code = `import { acquireLock } from ${JSON.stringify(LOCK_URL)};
const lock = await acquireLock(${JSON.stringify(path)}, { holder: { pid: process.pid, what: ${JSON.stringify(what)} }, timeoutMs: 10000, what: 'test lock' });
process.stdout.write('held\\n');
setTimeout(async () => { await lock.release(); process.stdout.write('released\\n'); }, ${holdMs});`;
  const proc = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  proc.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.on('exit', (c, s) => resolve({ code: c, signal: s })));
  const printed = (text: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const check = (): void => void (out.includes(text) && resolve());
      proc.stdout.on('data', check);
      check();
      void exited.then((e) => reject(new Error(`child exited (${e.code ?? e.signal}) before printing ${text}: ${err}`)));
    });
  return { proc, exited, printed };
}

/** Whether process pid has the file at path open (its /proc fd links). */
async function openedBy(pid: number, path: string): Promise<boolean> {
  const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
  for (const fd of fds) if ((await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')) === path) return true;
  return false;
}

function assertLocked(err: unknown, pid: number, what: string): true {
  assert.ok(isBerthError(err, 'LOCKED'), `expected LOCKED, got ${String(err)}`);
  assert.match(err.message, new RegExp(`^state /x is locked by ${what} \\(pid ${pid}, since \\d{4}-\\d\\d-\\d\\dT`));
  assert.equal((err.details as { holderPid?: number }).holderPid, pid);
  assert.ok(err.hint);
  return true;
}

describe('lock', () => {
  it('two acquires in one process exclude each other; release frees the lock', async () => {
    await withTempDir('berth-lock', async (dir) => {
      const path = join(dir, 'lock');
      const first = await acquireLock(path, opts('berth daemon'));
      assert.equal((await stat(path)).mode & 0o777, 0o600);
      assert.deepEqual({ ...(await lockHolder(path)), since: undefined }, { pid: process.pid, what: 'berth daemon', since: undefined });
      await assert.rejects(acquireLock(path, opts('berth apply')), (err) => assertLocked(err, process.pid, 'berth daemon'));
      await first.release();
      await first.release(); // twice is fine
      assert.equal(await lockHolder(path), undefined, 'a released lock names no holder');
      const second = await acquireLock(path, opts('berth apply'));
      assert.equal((await lockHolder(path))?.what, 'berth apply');
      await second.release();
    });
  });

  it('a waiter gets the lock as soon as it is released, within its timeout', async () => {
    await withTempDir('berth-lock', async (dir) => {
      const path = join(dir, 'lock');
      const first = await acquireLock(path, opts('first'));
      const t0 = Date.now();
      const waiting = acquireLock(path, opts('second', 5000));
      await sleep(200);
      await first.release();
      const second = await waiting;
      const waited = Date.now() - t0;
      assert.ok(waited >= 190 && waited < 5000, `waited ${waited} ms`);
      assert.equal((await lockHolder(path))?.what, 'second');
      await second.release();
    });
  });

  it('holders in one process take the lock one at a time', async () => {
    await withTempDir('berth-lock', async (dir) => {
      const path = join(dir, 'lock');
      let inside = 0;
      let most = 0;
      const run = async (i: number): Promise<number> => {
        const lock = await acquireLock(path, opts(`op ${i}`, 10_000));
        try {
          inside++;
          most = Math.max(most, inside);
          await sleep(20);
          inside--;
          return i;
        } finally {
          await lock.release();
        }
      };
      assert.deepEqual(await Promise.all([0, 1, 2, 3, 4].map(run)), [0, 1, 2, 3, 4]);
      assert.equal(most, 1);
      await (await acquireLock(path, opts('after', 0))).release();
    });
  });

  it('in one process, a release hands the lock to the next waiter with no timer running, and one that gave up holds up no one', async (t) => {
    await withTempDir('berth-lock', async (dir) => {
      const path = join(dir, 'lock');
      const first = await acquireLock(path, opts('first'));
      const quitter = acquireLock(path, opts('quitter', 50));
      const patient = acquireLock(path, opts('patient', 5000));
      await assert.rejects(quitter, (err) => assertLocked(err, process.pid, 'first'));
      await first.release();
      await (await patient).release();
      // With setTimeout stopped, a waiter that polled (as before: a retry every 20 ms) would never get the lock.
      const turns = async (n: number, until: () => boolean = () => false): Promise<void> => {
        for (let i = 0; i < n && !until(); i++) await new Promise((r) => setImmediate(r));
      };
      t.mock.timers.enable({ apis: ['setTimeout'] });
      try {
        let held = await acquireLock(path, opts('h0'));
        for (let i = 1; i <= 5; i++) {
          let got: Lock | undefined;
          void acquireLock(path, opts(`h${i}`, 5000)).then((l) => (got = l));
          await turns(500);
          assert.equal(got, undefined, `h${i} took a lock that was held`);
          await held.release();
          await turns(5000, () => got !== undefined);
          assert.ok(got, `h${i} did not get the lock at its release`);
          held = got;
        }
        assert.equal((await lockHolder(path))?.what, 'h5');
        await held.release();
      } finally {
        t.mock.timers.reset();
      }
    });
  });

  it('times out with LOCKED naming the holder after timeoutMs, and is cancelled by a signal', async () => {
    await withTempDir('berth-lock', async (dir) => {
      const path = join(dir, 'lock');
      const held = await acquireLock(path, opts('berth rm web'));
      const t0 = Date.now();
      await assert.rejects(acquireLock(path, opts('berth stop web', 300)), (err) => assertLocked(err, process.pid, 'berth rm web'));
      const waited = Date.now() - t0;
      assert.ok(waited >= 290 && waited < 5000, `gave up after ${waited} ms`);
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 100);
      await assert.rejects(acquireLock(path, { ...opts('x', 10_000), signal: ac.signal }), (err: unknown) => isBerthError(err, 'CANCELLED'));
      await held.release();
    });
  });

  it('excludes across processes, naming the other process', async () => {
    await withTempDir('berth-lock', async (dir) => {
      const path = join(dir, 'lock');
      const child = holderChild(path, 'berth daemon', 800);
      try {
        await child.printed('held');
        await assert.rejects(acquireLock(path, opts('berth apply')), (err) => assertLocked(err, child.proc.pid!, 'berth daemon'));
        // The child releases after 800 ms; a waiter gets it then.
        const lock = await acquireLock(path, opts('berth apply', 10_000));
        await child.printed('released');
        await lock.release();
      } finally {
        child.proc.kill('SIGKILL');
      }
    });
  });

  it('a holder killed by SIGKILL frees the lock', async () => {
    await withTempDir('berth-lock', async (dir) => {
      const path = join(dir, 'lock');
      const child = holderChild(path, 'berth daemon');
      try {
        await child.printed('held');
        await assert.rejects(acquireLock(path, opts('me')), (err) => assertLocked(err, child.proc.pid!, 'berth daemon'));
        child.proc.kill('SIGKILL');
        assert.equal((await child.exited).signal, 'SIGKILL');
        // The dead holder's name is still in the file, but the lock is free.
        const lock = await acquireLock(path, opts('me'));
        assert.deepEqual({ ...(await lockHolder(path)), since: undefined }, { pid: process.pid, what: 'me', since: undefined });
        await lock.release();
      } finally {
        child.proc.kill('SIGKILL');
      }
    });
  });

  it('a release that removes the file: a waiter that had it open takes the file now at the path, which still excludes', async () => {
    await withTempDir('berth-lock', async (dir) => {
      const path = join(dir, 'lock');
      const mine = await acquireLock(path, opts('parent'));
      const child = holderChild(path, 'child');
      try {
        // Until the child has the file open, waiting on it.
        for (let i = 0; !(await openedBy(child.proc.pid!, path)); i++) {
          assert.ok(i < 200, 'the child never opened the lock file');
          await sleep(25);
        }
        await mine.release({ remove: true });
        await child.printed('held');
        await assert.rejects(acquireLock(path, opts('again')), (err) => assertLocked(err, child.proc.pid!, 'child'));
      } finally {
        child.proc.kill('SIGKILL');
      }
    });
  });

  it('a child waiting for the lock gets it when this process releases it', async () => {
    await withTempDir('berth-lock', async (dir) => {
      const path = join(dir, 'lock');
      const mine = await acquireLock(path, opts('parent'));
      const child = holderChild(path, 'child', 0);
      try {
        await sleep(500);
        assert.equal((await lockHolder(path))?.what, 'parent', 'the child must still be waiting');
        await mine.release();
        await child.printed('held');
        assert.deepEqual(await child.exited, { code: 0, signal: null });
      } finally {
        child.proc.kill('SIGKILL');
      }
    });
  });
});
