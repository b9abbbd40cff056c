/**
 * Container commands served by a running `berth daemon` (cli/remote.ts ->
 * POST /cli -> the daemon's open System), on real runc and conmon: output
 * on the right streams, exit codes, errors identical to a local run, signals
 * passed on, a vanished client's foreground --rm container stopped and
 * removed, relative bind sources meaning the client's directory, and lines
 * the daemon must not run (another --root) run locally. The daemon logs
 * at debug, so each test can see whether it served a line ("served command").
 */
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runBerth, startBerth, type CliResult } from '../helpers/berth.js';
import { runRemote } from '../../src/cli/remote.js';
import { assertNothingLeft, berthOk, describeResult, eventually, ps, psOne, pushContainerImages, removeAll, startDaemon, storedEvents, type ContainerImages, type DaemonHandle } from '../helpers/containers.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { withTempDir } from '../helpers/tmp.js';

let reg: RegistryHandle;
let img: ContainerImages;

before(async () => {
  reg = await startRegistry();
  img = await pushContainerImages(reg);
});
after(async () => {
  await reg?.stop();
});

/** A fresh root with the image pulled and a daemon at debug; the daemon is stopped and the containers removed whatever the test does. */
function withDaemon(fn: (root: string, daemon: DaemonHandle, names: string[]) => Promise<void>): Promise<void> {
  return withTempDir('berth-remote', async (root) => {
    const names: string[] = [];
    let daemon: DaemonHandle | undefined;
    try {
      await berthOk(root, ['image', 'pull', img.busybox]);
      daemon = await startDaemon(root, 'debug');
      await fn(root, daemon, names);
    } finally {
      await daemon?.kill();
      await removeAll(root, names);
    }
  });
}

/** The command lines the daemon served so far (its debug log), as "command argv..." strings. */
function served(d: DaemonHandle): string[] {
  return d
    .stderr()
    .split('\n')
    .filter((l) => l.includes(' served command '))
    .map((l) => /argv=(\[.*\])/.exec(l)?.[1] ?? l);
}

const servedLine = (d: DaemonHandle, needle: string): boolean => served(d).some((l) => l.includes(needle));

describe('container commands through the daemon', () => {
  test('run --rm: stdout and stderr on their streams, the exit code, nothing left; the daemon served it', async () => {
    await withDaemon(async (root, daemon, names) => {
      names.push('seven');
      const res = await runBerth(root, ['run', '--rm', '--name', 'seven', img.busybox, '--', 'sh', '-c', 'echo out; echo err >&2; exit 7']);
      assert.equal(res.code, 7, describeResult(res));
      assert.equal(res.stdout, 'out\n');
      assert.equal(res.stderr, 'err\n');
      assert.ok(servedLine(daemon, '"seven"'), `the daemon served the run: ${daemon.stderr()}`);
      // Read through the daemon, which stores the events it has before it answers `berth events`; the exit told once: by the removal, not the supervisor.
      const events = (await storedEvents(root)).filter((e) => (e.event as { name?: string }).name === 'seven');
      assert.deepEqual(events.map((e) => e.event.type), ['container.created', 'container.started', 'container.exited', 'container.removed']);
      assert.equal((events[2]!.event as { exitCode?: number }).exitCode, 7);
      await assertNothingLeft(root, 'after run --rm through the daemon');
    });
  });

  test('the daemon answers a line before it runs it: a run quiet for longer than the client waits for an answer is served', async () => {
    await withDaemon(async (root, daemon, names) => {
      names.push('quiet');
      let out = '';
      let err = '';
      const argv = ['--root', join(root, 'lib'), '--state', join(root, 'run'), 'run', '--rm', '--name', 'quiet', img.busybox, '--', 'sh', '-c', 'sleep 2; echo done'];
      const env = { DOCKER_CONFIG: join(root, 'docker'), PATH: process.env.PATH ?? '', ...(process.env.NODE_EXTRA_CA_CERTS ? { BERTH_EXTRA_CA_CERTS: process.env.NODE_EXTRA_CA_CERTS } : {}) };
      const code = await runRemote(argv, join(root, 'run', 'api.sock'), {
        env,
        cwd: root,
        stdout: { write: (t: string) => (out += t) },
        stderr: { write: (t: string) => (err += t) },
        onSignal: () => () => {},
        die: () => {},
      }, { answerTimeoutMs: 1000 });
      assert.deepEqual([code, out, err], [0, 'done\n', '']);
      assert.ok(servedLine(daemon, '"quiet"'), `the daemon served it: ${daemon.stderr()}`);
    });
  });

  test('run -d, ps -o json, logs, stop, rm through the daemon', async () => {
    await withDaemon(async (root, daemon, names) => {
      names.push('bg');
      const out = await berthOk(root, ['run', '-d', '--name', 'bg', img.busybox, '--', 'sh', '-c', 'echo hello; echo oops >&2; trap "exit 0" TERM; while true; do sleep 0.1; done']);
      assert.equal(out, 'bg\n');
      const v = await eventually('bg to run', async () => {
        const x = await psOne(root, 'bg');
        return x.state === 'running' ? x : undefined;
      });
      assert.ok(v.pid);
      await eventually('bg to log', async () => ((await runBerth(root, ['logs', 'bg'])).stdout === 'hello\n' ? true : undefined));
      const logs = await runBerth(root, ['logs', 'bg']);
      assert.deepEqual([logs.code, logs.stdout, logs.stderr], [0, 'hello\n', 'oops\n']);
      assert.equal(await berthOk(root, ['stop', '-t', '5', 'bg']), 'bg\n');
      assert.equal((await psOne(root, 'bg')).state, 'exited');
      assert.equal(await berthOk(root, ['rm', 'bg']), 'bg\n');
      assert.deepEqual(await ps(root), []);
      for (const c of ['run', 'ps', 'logs', 'stop', 'rm']) assert.ok(served(daemon).some((l) => l.startsWith(`["${c}"`) || l.includes(`"${c}"`)), `${c} served: ${served(daemon).join('\n')}`);
      assert.ok(servedLine(daemon, '"-o","json","ps"]'), 'ps -o json served');
    });
  });

  test('errors through the daemon have the message and exit code of a local run', async () => {
    await withTempDir('berth-remote', async (root) => {
      await berthOk(root, ['image', 'pull', img.busybox]);
      const lines = [
        ['run', '--rm', '--name', 'nope', `${reg.host}/test/nothing-here:1`, '--', 'true'],
        ['run', '--rm', '--name', 'big', '--memory', '12 parsecs', img.busybox, '--', 'true'],
        ['run', '--bogus', img.busybox],
        ['logs', 'no-such-container'],
      ];
      const daemon = await startDaemon(root, 'debug');
      const remote: CliResult[] = [];
      try {
        for (const l of lines) remote.push(await runBerth(root, l));
        assert.equal(served(daemon).length, lines.length, `all served: ${daemon.stderr()}`);
      } finally {
        await daemon.stop();
      }
      for (const [i, l] of lines.entries()) {
        const local = await runBerth(root, l);
        assert.equal(remote[i]!.code, 1, describeResult(remote[i]!));
        assert.deepEqual([remote[i]!.code, remote[i]!.stdout, remote[i]!.stderr], [local.code, local.stdout, local.stderr], l.join(' '));
      }
      await assertNothingLeft(root, 'after refused runs');
    });
  });

  test('SIGINT to a foreground client reaches the container; the client exits with its code', async () => {
    await withDaemon(async (root, daemon, names) => {
      names.push('ctrlc');
      const { child, done } = startBerth(root, ['run', '--rm', '--name', 'ctrlc', img.busybox, '--', 'sh', '-c', 'trap "echo got-int; exit 42" INT; echo ready; while true; do sleep 0.1; done']);
      try {
        let out = '';
        child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
        await eventually('ctrlc to print ready', async () => (out.includes('ready') ? true : undefined));
        child.kill('SIGINT');
        const res = await done;
        assert.equal(res.code, 42, describeResult(res));
        assert.equal(res.stdout, 'ready\ngot-int\n');
        assert.ok(servedLine(daemon, '"ctrlc"'));
        await assertNothingLeft(root, 'after the interrupted run --rm');
      } finally {
        child.kill('SIGKILL');
      }
    });
  });

  test('a signal the command does not handle ends the client by it, as locally: SIGINT to logs -f', async () => {
    await withDaemon(async (root, daemon, names) => {
      names.push('chatty');
      await berthOk(root, ['run', '-d', '--name', 'chatty', img.busybox, '--', 'sh', '-c', 'echo first; sleep 600']);
      const { child, done } = startBerth(root, ['logs', '-f', 'chatty']);
      try {
        let out = '';
        child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
        await eventually('logs -f to print', async () => (out.includes('first') ? true : undefined));
        child.kill('SIGINT');
        const res = await done;
        assert.deepEqual([res.code, res.signal, res.stdout], [null, 'SIGINT', 'first\n'], describeResult(res));
        // The daemon's logs -f ended too (it logs a served line when the command is done).
        await eventually('the daemon to finish logs -f', async () => (servedLine(daemon, '"logs","-f","chatty"]') ? true : undefined));
        assert.equal((await psOne(root, 'chatty')).state, 'running', 'a signal to logs -f is not the container\'s');
      } finally {
        child.kill('SIGKILL');
      }
    });
  });

  test('a foreground run --rm whose client is SIGKILLed is stopped and removed by the daemon', async () => {
    await withDaemon(async (root, daemon, names) => {
      names.push('orphan');
      const { child, done } = startBerth(root, ['run', '--rm', '--name', 'orphan', img.busybox, '--', 'sh', '-c', 'trap "exit 0" TERM; echo ready; while true; do sleep 0.1; done']);
      let out = '';
      child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      await eventually('orphan to print ready', async () => (out.includes('ready') ? true : undefined));
      child.kill('SIGKILL');
      await done;
      await eventually('orphan to be removed', async () => ((await ps(root)).length === 0 ? true : undefined), 20_000, 200);
      await assertNothingLeft(root, 'after the client vanished');
      assert.match(daemon.stderr(), /the caller is gone; stopping its foreground container.*orphan/);
    });
  });

  test('events -f through the daemon: what served commands did arrives as it happens, and the follower ends with its client', async () => {
    await withDaemon(async (root, daemon, names) => {
      names.push('watched');
      const { child, done } = startBerth(root, ['-o', 'json', 'events', '-f']);
      let out = '';
      child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      await berthOk(root, ['run', '--rm', '--name', 'watched', img.busybox, '--', 'true']);
      const types = (): string[] =>
        out
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as { event: { type: string; name?: string } })
          .filter((e) => e.event.name === 'watched')
          .map((e) => e.event.type);
      await eventually('the run in the followed log', async () => (types().includes('container.removed') ? true : undefined), 10_000);
      assert.deepEqual(types(), ['container.created', 'container.started', 'container.exited', 'container.removed']);
      child.kill('SIGKILL');
      await done;
      // The daemon's follower notices its client is gone at its next read (every 250 ms) and ends: the line is logged as served.
      await eventually('the follower to end', async () => (servedLine(daemon, '"events","-f"') ? true : undefined), 5_000);
    });
  });

  test('a relative bind source means the client directory; -v and --log-level debug work through the daemon', async () => {
    await withDaemon(async (root, daemon, names) => {
      names.push('bind');
      const here = join(root, 'here');
      await mkdir(join(here, 'data'), { recursive: true });
      await writeFile(join(here, 'data', 'f'), 'from-the-client\n');
      const res = await runBerth(root, ['--log-level', 'debug', 'run', '--rm', '--name', 'bind', '-v', 'data:/data:ro', img.busybox, '--', 'cat', '/data/f'], {}, here);
      assert.equal(res.code, 0, describeResult(res));
      assert.equal(res.stdout, 'from-the-client\n');
      // The daemon's System logged on the command's behalf reaches the client at its level.
      assert.match(res.stderr, / DEBUG snapshot created module=snapshots /, res.stderr);
      assert.ok(servedLine(daemon, '"bind"'));
    });
  });

  test('a line for another --root is not the daemon’s: it runs locally', async () => {
    await withDaemon(async (root, daemon, names) => {
      names.push('mine');
      await berthOk(root, ['run', '-d', '--name', 'mine', img.busybox, '--', 'sleep', '600']);
      // startBerth puts --root ROOT/lib first; the later --root wins.
      const other = await runBerth(root, ['-o', 'json', 'ps', '--root', join(root, 'other')]);
      assert.equal(other.code, 0, describeResult(other));
      assert.deepEqual(JSON.parse(other.stdout), []);
      assert.ok(!servedLine(daemon, 'other'), `not served: ${served(daemon).join('\n')}`);
      assert.deepEqual((await ps(root)).map((v) => v.name), ['mine']);
    });
  });
});
