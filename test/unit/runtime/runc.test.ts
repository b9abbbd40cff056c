/**
 * RuncRuntime without real containers: finding its tools, and reading exit
 * records against a stand-in runc (a shell script) whose answers the test
 * controls. The real thing is covered by test/integration/containers.test.ts.
 */
import assert from 'node:assert/strict';
import { chmod, mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { isBerthError } from '../../../src/errors.js';
import { createLogger } from '../../../src/log.js';
import { RuncRuntime } from '../../../src/runtime/runc.js';
import { withTempDir } from '../../helpers/tmp.js';

const logger = createLogger(() => {}, 'error');

async function script(path: string, body: string): Promise<void> {
  await writeFile(path, `#!/bin/sh\n${body}\n`);
  await chmod(path, 0o755);
}

describe('RuncRuntime tools', () => {
  for (const missing of ['runc', 'conmon'] as const) {
    it(`fails with one error naming the package when ${missing} is missing`, async () => {
      await withTempDir('berth-tools', async (dir) => {
        const bin = join(dir, 'bin');
        await mkdir(bin);
        const present = missing === 'runc' ? 'conmon' : 'runc';
        await symlink(`/usr/bin/${present}`, join(bin, present));
        const runtime = new RuncRuntime({ stateDir: join(dir, 'state'), logger, toolDirs: [bin] });
        for (const call of [() => runtime.list(), () => runtime.create('c1', { bundle: dir, logPath: join(dir, 'log'), logMaxBytes: 1 << 20 })]) {
          await assert.rejects(call(), (err: unknown) => {
            assert.ok(isBerthError(err, 'FAILED_PRECONDITION'), String(err));
            assert.match(err.message, new RegExp(`^${missing} is not installed \\(looked in ${bin}\\)$`));
            assert.match(err.hint ?? '', new RegExp(`apt-get install -y ${missing}$`));
            assert.deepEqual(err.details, { tool: missing, package: missing });
            return true;
          });
        }
      });
    });
  }

  it('names the first missing package when both are missing, and looks in searchPath first', async () => {
    await withTempDir('berth-tools', async (dir) => {
      const runtime = new RuncRuntime({ stateDir: join(dir, 'state'), logger, toolDirs: [] });
      await assert.rejects(runtime.list(), (err: unknown) => isBerthError(err, 'FAILED_PRECONDITION') && /^(runc|conmon) is not installed/.test(err.message));
      const bin = join(dir, 'bin');
      await mkdir(bin);
      await script(join(bin, 'runc'), 'echo "[]"');
      await script(join(bin, 'conmon'), 'exit 1');
      const found = new RuncRuntime({ stateDir: join(dir, 'state'), logger, searchPath: [bin], toolDirs: [] });
      assert.deepEqual(await found.list(), []);
    });
  });
});

describe('RuncRuntime exit records', () => {
  /** A runtime on a stand-in runc whose `state` prints `status` after running `sideEffect`. */
  async function fakeRuntime(dir: string, status: string, sideEffect = ':'): Promise<{ runtime: RuncRuntime; state: string }> {
    const bin = join(dir, 'bin');
    const state = join(dir, 'state');
    await mkdir(bin);
    await script(join(bin, 'conmon'), 'exit 1');
    await script(join(bin, 'runc'), `case "$3" in state) ${sideEffect}; echo '{"id":"c1","status":"${status}","pid":0,"bundle":"/b"}';; *) exit 1;; esac`);
    await mkdir(join(state, 'runc', 'c1'), { recursive: true });
    await writeFile(join(state, 'runc', 'c1', 'state.json'), '{}');
    return { runtime: new RuncRuntime({ stateDir: state, logger, toolDirs: [bin] }), state };
  }

  it('reads the exit code, and 128+n as signal n', async () => {
    await withTempDir('berth-exit', async (dir) => {
      const { runtime, state } = await fakeRuntime(dir, 'stopped');
      await runtime.list().catch(() => {}); // creates the state layout
      await writeFile(join(state, 'exits', 'c1'), '7');
      assert.deepEqual({ ...(await runtime.exitStatus('c1')), at: undefined }, { code: 7, oomKilled: false, at: undefined });
      await writeFile(join(state, 'exits', 'c1'), '137');
      const killed = await runtime.exitStatus('c1');
      assert.equal(killed?.code, 137);
      assert.equal(killed?.signal, 9);
    });
  });

  it('waits while the container runs, and reports a record that is still being written as none', async () => {
    await withTempDir('berth-exit', async (dir) => {
      const { runtime, state } = await fakeRuntime(dir, 'running');
      await runtime.list().catch(() => {});
      assert.equal(await runtime.exitStatus('c1'), undefined);
      await writeFile(join(state, 'exits', 'c1'), '');
      assert.equal(await runtime.exitStatus('c1'), undefined);
    });
  });

  it('reports a lost exit (255) only when the container stopped and its monitor is gone without a record', async () => {
    await withTempDir('berth-exit', async (dir) => {
      const { runtime } = await fakeRuntime(dir, 'stopped');
      const lost = await runtime.exitStatus('c1');
      assert.equal(lost?.code, 255);
      assert.equal(lost?.lost, true);
    });
  });

  it('does not report a lost exit when the monitor wrote the record and exited while it was being checked', async () => {
    await withTempDir('berth-exit', async (dir) => {
      // The stand-in runc writes the record as conmon would, between the first read of the record and the monitor check.
      const { runtime, state } = await fakeRuntime(dir, 'stopped', `printf 3 > ${JSON.stringify(join(dir, 'state', 'exits', 'c1'))}`);
      await runtime.list().catch(() => {});
      const exit = await runtime.exitStatus('c1');
      assert.equal(exit?.code, 3, `got ${JSON.stringify(exit)} from ${state}`);
      assert.equal(exit?.lost, undefined);
    });
  });
});
