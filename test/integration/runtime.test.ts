/**
 * RuncRuntime on the real runc and conmon, below containers/: a bundle made
 * by hand (busybox-static in a directory, a spec from generateSpec) goes
 * through create and start, and runc's own `runc state` is the judge of
 * what start did. start does not run `runc start` (runc.ts startByFifo);
 * these tests hold it to what `runc start` does: created becomes running,
 * a second start fails with runc's message, a container whose process died
 * before its start fails rather than hangs.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFile, mkdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { isBerthError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { generateSpec } from '../../src/runtime/spec.js';
import { RuncRuntime } from '../../src/runtime/runc.js';
import { eventually } from '../helpers/containers.js';
import { withTempDir } from '../helpers/tmp.js';

const logger = createLogger(() => {}, 'error');

interface Setup {
  runtime: RuncRuntime;
  /** runc's own view: `runc state`'s status, or undefined when runc knows no such container. */
  runcStatus(id: string): string | undefined;
  /** Creates container `id` from a fresh bundle running `args`; returns the init pid. */
  create(id: string, args: string[]): Promise<number>;
  runcDir(id: string): string;
}

/** A runtime on its own --state; every container it made is deleted (forced) afterwards. */
function withRuntime(fn: (s: Setup) => Promise<void>): Promise<void> {
  return withTempDir('berth-rt', async (dir) => {
    const stateDir = join(dir, 'state');
    const runtime = new RuncRuntime({ stateDir, logger });
    const made: string[] = [];
    const runcStatus = (id: string): string | undefined => {
      try {
        return (JSON.parse(execFileSync('runc', ['--root', join(stateDir, 'runc'), 'state', id], { stdio: ['ignore', 'pipe', 'ignore'] }).toString()) as { status: string }).status;
      } catch {
        return undefined;
      }
    };
    const create = async (id: string, args: string[]): Promise<number> => {
      const bundle = join(dir, 'bundles', id);
      const rootfs = join(bundle, 'rootfs');
      await mkdir(join(rootfs, 'bin'), { recursive: true });
      await copyFile('/bin/busybox', join(rootfs, 'bin', 'busybox'));
      for (const tool of ['sh', 'sleep', 'true']) await symlink('busybox', join(rootfs, 'bin', tool));
      const spec = generateSpec({ architecture: 'amd64', os: 'linux', config: { Cmd: args, Env: ['PATH=/bin'] }, rootfs: { type: 'layers', diff_ids: [] } }, {}, { cgroupsPath: `/berth-test/${id}` });
      await writeFile(join(bundle, 'config.json'), JSON.stringify(spec));
      made.push(id);
      return (await runtime.create(id, { bundle, logPath: join(dir, `${id}.log`), logMaxBytes: 1 << 20 })).pid;
    };
    try {
      await fn({ runtime, runcStatus, create, runcDir: (id) => join(stateDir, 'runc', id) });
    } finally {
      for (const id of made) await runtime.delete(id, { force: true }).catch(() => {});
    }
  });
}

/** The process's command line (words joined by spaces), or undefined when it is gone. */
async function command(pid: number): Promise<string | undefined> {
  return (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => undefined))?.replace(/\0$/, '').split('\0').join(' ');
}

describe('RuncRuntime start, judged by runc', () => {
  test('a created container runs after start: runc says running, its fifo is gone, its process is the command; a second start fails as runc start does', async () => {
    await withRuntime(async ({ runtime, runcStatus, create, runcDir }) => {
      const pid = await create('c1', ['sleep', '1000']);
      assert.equal(runcStatus('c1'), 'created');
      assert.equal((await runtime.state('c1'))?.status, 'created');
      assert.match((await command(pid)) ?? 'gone', /runc init$/, 'before start, the init process is runc init');
      await runtime.start('c1');
      assert.equal(runcStatus('c1'), 'running');
      assert.equal((await runtime.state('c1'))?.status, 'running');
      await assert.rejects(stat(join(runcDir('c1'), 'exec.fifo')), { code: 'ENOENT' });
      // The process has exec'd the command when start returns (runc start too waits for the fifo's end of file).
      assert.equal(await command(pid), 'sleep 1000');
      await assert.rejects(runtime.start('c1'), (err: unknown) => isBerthError(err, 'FAILED_PRECONDITION') && /runc start failed: .*already running/.test(err.message));
      assert.equal(runcStatus('c1'), 'running');
    });
  });

  test('a container whose command exits at once: start returns, and the exit record follows', async () => {
    await withRuntime(async ({ runtime, create }) => {
      await create('c2', ['true']);
      await runtime.start('c2');
      const exit = await eventually('the exit record of c2', () => runtime.exitStatus('c2'));
      assert.equal(exit.code, 0);
    });
  });

  test('a created container whose process was killed: start fails naming the stopped state, whether the process died before the start or during it', async () => {
    await withRuntime(async ({ runtime, runcStatus, create }) => {
      const before = await create('c3', ['sleep', '1000']);
      process.kill(before, 'SIGKILL');
      await eventually('c3 to stop', async () => (runcStatus('c3') === 'stopped' ? true : undefined));
      await assert.rejects(runtime.start('c3'), (err: unknown) => isBerthError(err, 'FAILED_PRECONDITION') && /runc start failed: .*stopped/.test(err.message));

      // Stopped, the init process cannot open its end of the fifo: the start waits on it, until it dies.
      const during = await create('c4', ['sleep', '1000']);
      process.kill(during, 'SIGSTOP');
      let settled = false;
      const started = runtime.start('c4').finally(() => (settled = true));
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(settled, false, 'start waits while the process lives');
      process.kill(during, 'SIGKILL');
      const t0 = Date.now();
      await assert.rejects(started, (err: unknown) => isBerthError(err, 'FAILED_PRECONDITION') && /runc start failed: .*stopped/.test(err.message));
      assert.ok(Date.now() - t0 < 2000, `start failed ${Date.now() - t0} ms after the process died`);
    });
  });

  test('start of a container runc does not know fails naming it', async () => {
    await withRuntime(async ({ runtime }) => {
      await assert.rejects(runtime.start('nosuch'), (err: unknown) => isBerthError(err, 'FAILED_PRECONDITION') && /container nosuch: runc start failed/.test(err.message));
    });
  });
});
