/**
 * `berth daemon` supervising real containers (runc under conmon), driven
 * through the CLI: restart policies with backoff, restarts of a container
 * killed by hand, adoption by a new daemon after the old one was SIGKILLed
 * (containers keep running; an exit while no daemon ran is picked up), and
 * one daemon per --state.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BerthEvent } from '../../src/events.js';
import type { StoredEvent } from '../../src/metadata/store.js';
import { acquireLock } from '../../src/lock/index.js';
import { openTestSystem, runBerth, startBerth } from '../helpers/berth.js';
import { berthOk, describeResult, eventually, leftovers, mountsUnder, psOne, pushContainerImages, removeAll, runcList, startDaemon, storedEvents, type ContainerImages, type DaemonHandle } from '../helpers/containers.js';
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

/** A fresh root with the image pulled; daemons are stopped, then containers removed, whatever the test does. */
function withRoot(fn: (root: string, names: string[], daemons: DaemonHandle[]) => Promise<void>): Promise<void> {
  return withTempDir('berth-daemon', async (root) => {
    const names: string[] = [];
    const daemons: DaemonHandle[] = [];
    try {
      await berthOk(root, ['image', 'pull', img.busybox]);
      await fn(root, names, daemons);
    } finally {
      for (const d of daemons) await d.kill();
      await removeAll(root, names);
    }
  });
}

type Of<T extends BerthEvent['type']> = Extract<BerthEvent, { type: T }>;

function eventsOf<T extends BerthEvent['type']>(events: StoredEvent[], type: T, name: string): Array<Of<T> & { seq: number }> {
  return events.filter((e) => e.event.type === type && (e.event as { name?: string }).name === name).map((e) => ({ ...(e.event as Of<T>), seq: e.seq }));
}

describe('berth daemon', () => {
  test('on-failure:2: a container that exits 3 is restarted twice with doubling backoff, then given up', async () => {
    await withRoot(async (root, names, daemons) => {
      daemons.push(await startDaemon(root));
      names.push('flaky');
      await berthOk(root, ['run', '-d', '--name', 'flaky', '--restart', 'on-failure:2', img.busybox, '--', 'sh', '-c', 'echo run; exit 3']);
      const events = await eventually('flaky to be given up', async () => {
        const all = await storedEvents(root);
        return eventsOf(all, 'container.gave-up', 'flaky').length ? all : undefined;
      }, 30_000, 250);
      const scheduled = eventsOf(events, 'container.restart.scheduled', 'flaky');
      assert.deepEqual(scheduled.map((e) => [e.attempt, e.exitCode]), [[1, 3], [2, 3]]);
      const [first, second] = scheduled.map((e) => e.delayMs);
      assert.ok(first! >= 900 && first! <= 1100, `first delay ${first} ms`);
      assert.ok(second! >= 1800 && second! <= 2200, `second delay ${second} ms`);
      const started = eventsOf(events, 'container.started', 'flaky');
      assert.deepEqual(started.map((e) => e.restartCount), [0, 1, 2]);
      const exits = eventsOf(events, 'container.exited', 'flaky');
      assert.deepEqual(exits.map((e) => e.exitCode), [3, 3, 3]);
      const [gaveUp] = eventsOf(events, 'container.gave-up', 'flaky');
      assert.equal(gaveUp!.restartCount, 2);
      // In order: start, exit, schedule, start, exit, schedule, start, exit, give up.
      const order = events.filter((e) => (e.event as { name?: string }).name === 'flaky').map((e) => e.event.type);
      assert.deepEqual(order, [
        'container.created',
        'container.started',
        'container.exited',
        'container.restart.scheduled',
        'container.started',
        'container.exited',
        'container.restart.scheduled',
        'container.started',
        'container.exited',
        'container.gave-up',
      ]);
      // The delays really passed between an exit and the next start.
      const at = (seq: number): number => Date.parse(events.find((e) => e.seq === seq)!.time);
      assert.ok(at(started[1]!.seq) - at(exits[0]!.seq) >= 850, 'first restart waited its backoff');
      assert.ok(at(started[2]!.seq) - at(exits[1]!.seq) >= 1750, 'second restart waited its backoff');

      const v = await psOne(root, 'flaky');
      assert.deepEqual([v.state, v.restarts, v.exitCode, v.nextRestartAt], ['exited', 2, 3, undefined]);
      assert.equal((await runBerth(root, ['logs', 'flaky'])).stdout, 'run\nrun\nrun\n');
      // Nothing more happens.
      await sleep(2500);
      assert.equal((await psOne(root, 'flaky')).restarts, 2);
      const d = await daemons[0]!.stop();
      assert.equal(d.code, 0, describeResult(d));
    });
  });

  test('always: a container killed by hand is restarted', async () => {
    await withRoot(async (root, names, daemons) => {
      daemons.push(await startDaemon(root));
      names.push('phoenix');
      await berthOk(root, ['run', '-d', '--name', 'phoenix', '--restart', 'always', img.busybox, '--', 'sleep', '600']);
      const first = await eventually('phoenix to run', async () => {
        const v = await psOne(root, 'phoenix');
        return v.state === 'running' && v.pid ? v : undefined;
      });
      process.kill(first.pid!, 'SIGKILL');
      const again = await eventually('phoenix to run again', async () => {
        const v = await psOne(root, 'phoenix');
        return v.state === 'running' && v.pid && v.pid !== first.pid ? v : undefined;
      }, 30_000, 250);
      assert.equal(again.restarts, 1);
      const events = await storedEvents(root);
      assert.deepEqual(eventsOf(events, 'container.exited', 'phoenix').map((e) => [e.exitCode, e.signal]), [[137, 9]]);
      assert.deepEqual(eventsOf(events, 'container.restart.scheduled', 'phoenix').map((e) => [e.attempt, e.exitCode]), [[1, 137]]);
      assert.deepEqual(await runcList(root), [first.id]);

      // A stop by the user is not a crash: no restart.
      await berthOk(root, ['stop', '-t', '1', 'phoenix']);
      await sleep(2500);
      const stopped = await psOne(root, 'phoenix');
      assert.deepEqual([stopped.state, stopped.desired, stopped.restarts], ['exited', 'stopped', 1]);
      assert.equal(eventsOf(await storedEvents(root), 'container.restart.scheduled', 'phoenix').length, 1);
    });
  });

  test('berth stop during a restart backoff cancels the restart', async () => {
    await withRoot(async (root, names, daemons) => {
      daemons.push(await startDaemon(root));
      names.push('crashy');
      await berthOk(root, ['run', '-d', '--name', 'crashy', '--restart', 'always', img.busybox, '--', 'sh', '-c', 'exit 1']);
      // After three restarts the backoff is 8 s: long enough to stop it while it waits, even on a loaded machine.
      const waiting = await eventually('crashy to wait for its fourth restart', async () => {
        const v = await psOne(root, 'crashy');
        return v.state === 'restarting' && v.restarts === 3 ? v : undefined;
      }, 40_000, 200);
      await berthOk(root, ['stop', 'crashy']);
      const stopped = await psOne(root, 'crashy');
      assert.deepEqual([stopped.state, stopped.desired, stopped.nextRestartAt], ['exited', 'stopped', undefined]);
      const mine = (events: StoredEvent[]): StoredEvent[] => events.filter((e) => (e.event as { name?: string }).name === 'crashy');
      const types = mine(await storedEvents(root)).map((e) => e.event.type);
      assert.equal(types.at(-1), 'container.stopped', `the stop was the last event: ${types.join(' ')}`);
      assert.equal(types.at(-2), 'container.restart.scheduled', `the stop came after the restart it was to cancel: ${types.join(' ')}`);
      // Past the time the restart was due: nothing started.
      await sleep(Math.max(0, Date.parse(waiting.nextRestartAt!) - Date.now()) + 2000);
      const later = await psOne(root, 'crashy');
      assert.deepEqual([later.state, later.restarts], ['exited', 3], 'no restart after the stop');
      assert.equal(mine(await storedEvents(root)).at(-1)?.event.type, 'container.stopped');
    });
  });

  test('restart policies need a daemon: run -d --restart warns when none runs; ps shows a due restart as pending until one comes back', async () => {
    await withRoot(async (root, names, daemons) => {
      names.push('alone', 'waiting');
      const alone = await runBerth(root, ['run', '-d', '--name', 'alone', '--restart', 'on-failure:2', img.busybox, '--', 'sleep', '600']);
      assert.equal(alone.code, 0, alone.stderr);
      assert.match(alone.stderr, /warning: no berth daemon runs on .*: container "alone" is restarted by its policy \(--restart on-failure:2\) only while one does/);
      const first = await startDaemon(root);
      daemons.push(first);
      const served = await runBerth(root, ['run', '-d', '--name', 'waiting', '--restart', 'always', img.busybox, '--', 'sh', '-c', 'exit 1']);
      assert.equal(served.code, 0, served.stderr);
      assert.doesNotMatch(served.stderr, /warning/, 'a daemon runs: no warning');
      assert.doesNotMatch((await runBerth(root, ['status'])).stdout, /no daemon/);
      // After two restarts the backoff is 4 s: the daemon is killed while it waits.
      await eventually('waiting to back off after its second restart', async () => {
        const v = await psOne(root, 'waiting');
        return v.state === 'restarting' && v.restarts === 2 ? v : undefined;
      }, 40_000, 100);
      await first.kill();
      const table = await berthOk(root, ['ps']);
      assert.match(table, /^waiting +\S+ +restart pending \(no daemon\) /m, table);
      assert.match((await runBerth(root, ['status'])).stdout, /^no daemon runs on .*: this is what the records say; restarts and reconciles wait for berth daemon$/m);
      assert.match(table, /^alone +\S+ +running /m, table);
      daemons.push(await startDaemon(root));
      await eventually('a new daemon to do the pending restart', async () => {
        const v = await psOne(root, 'waiting');
        return v.restarts >= 3 ? v : undefined;
      }, 30_000, 200);
      assert.doesNotMatch(await berthOk(root, ['ps']), /no daemon/);
    });
  });

  test('run --rm is removed when it exits even when its caller is gone: a foreground one whose daemon was SIGKILLed, and a detached one', async () => {
    await withRoot(async (root, names, daemons) => {
      const first = await startDaemon(root);
      daemons.push(first);
      names.push('orphan', 'detached');
      const client = startBerth(root, ['run', '--rm', '--name', 'orphan', img.busybox, '--', 'sh', '-c', 'sleep 3']);
      await eventually('orphan to run', async () => ((await psOne(root, 'orphan').catch(() => undefined))?.state === 'running' ? true : undefined));
      await first.kill();
      const lost = await client.done;
      assert.equal(lost.code, 1, describeResult(lost));
      assert.match(lost.stderr, /lost the daemon/);
      assert.equal((await psOne(root, 'orphan')).state, 'running', 'the container outlives its daemon and its client');

      daemons.push(await startDaemon(root));
      assert.equal(await berthOk(root, ['run', '-d', '--rm', '--name', 'detached', img.busybox, '--', 'true']), 'detached\n');
      // Each is removed once it has exited, by the new daemon: nothing of either is left.
      await eventually('both to be removed', async () => {
        const left = JSON.parse(await berthOk(root, ['-o', 'json', 'ps'])) as Array<{ name: string }>;
        return left.length === 0 ? true : undefined;
      }, 20_000, 200);
      // The supervisor publishes its events after the removal that `ps` shows.
      const types = async (n: string): Promise<string[]> => (await storedEvents(root)).filter((e) => (e.event as { name?: string }).name === n).map((e) => e.event.type);
      await eventually('the removals in the event log', async () => ((await types('orphan')).at(-1) === 'container.removed' && (await types('detached')).at(-1) === 'container.removed' ? true : undefined), 5_000);
      assert.deepEqual((await types('orphan')).slice(-3), ['container.adopted', 'container.exited', 'container.removed']);
      assert.deepEqual((await types('detached')).slice(-2), ['container.exited', 'container.removed']);
      assert.deepEqual(await mountsUnder(root), [], 'no mount left');
      assert.deepEqual(await runcList(root), [], 'no runc state left');
    });
  });

  test('SIGKILL of the daemon leaves containers running; a new daemon adopts them and picks up an exit missed meanwhile', async () => {
    await withRoot(async (root, names, daemons) => {
      const first = await startDaemon(root);
      daemons.push(first);
      names.push('steady', 'brief');
      await berthOk(root, ['run', '-d', '--name', 'steady', '--restart', 'always', img.busybox, '--', 'sleep', '600']);
      const steady = await eventually('steady to run', async () => {
        const v = await psOne(root, 'steady');
        return v.state === 'running' && v.pid ? v : undefined;
      });
      await berthOk(root, ['run', '-d', '--name', 'brief', '--restart', 'always', img.busybox, '--', 'sleep', '2']);
      const killed = await first.kill();
      assert.equal(killed.signal, 'SIGKILL');
      const seqAtKill = Math.max(0, ...(await storedEvents(root)).map((e) => e.seq));

      // brief exits while no daemon runs; steady keeps running.
      await sleep(3000);
      const briefDown = await psOne(root, 'brief');
      assert.equal(briefDown.state, 'exited', 'the exit record is seen without a daemon');
      assert.equal(briefDown.exitCode, 0);
      assert.equal(briefDown.restarts, 0);
      const steadyDown = await psOne(root, 'steady');
      assert.deepEqual([steadyDown.state, steadyDown.pid], ['running', steady.pid]);

      daemons.push(await startDaemon(root));
      // Restarted: counted, running, and its start in the event log (events are stored in batches).
      const after = await eventually('brief to be restarted by the new daemon', async () => {
        const v = await psOne(root, 'brief');
        const stored = (await storedEvents(root)).filter((e) => e.seq > seqAtKill);
        return v.restarts >= 1 && eventsOf(stored, 'container.started', 'brief').length >= 1 ? v : undefined;
      }, 30_000, 250);
      assert.ok(after.restarts >= 1);
      const events = (await storedEvents(root)).filter((e) => e.seq > seqAtKill);
      const adopted = eventsOf(events, 'container.adopted', 'steady');
      assert.deepEqual(adopted.map((e) => e.pid), [steady.pid], 'steady adopted once, same pid');
      assert.equal(eventsOf(events, 'container.started', 'steady').length, 0, 'steady not started again');
      const briefExit = eventsOf(events, 'container.exited', 'brief');
      assert.equal(briefExit[0]?.exitCode, 0, 'the missed exit is recorded');
      assert.ok(eventsOf(events, 'container.restart.scheduled', 'brief').length >= 1);
      assert.ok(eventsOf(events, 'container.started', 'brief').length >= 1);

      const steadyNow = await psOne(root, 'steady');
      assert.deepEqual([steadyNow.state, steadyNow.pid, steadyNow.restarts], ['running', steady.pid, 0]);
      // One runc container per berth container: nothing started twice.
      const ids = await runcList(root);
      assert.equal(ids.filter((id) => id === steady.id).length, 1);
      assert.ok(ids.every((id) => id === steady.id || id === after.id), `runc list: ${ids.join(' ')}`);
      assert.equal(new Set(ids).size, ids.length);
    });
  });

  test('after a reboot (processes, mounts and --state gone) the daemon starts an always container again', async () => {
    await withRoot(async (root, names, daemons) => {
      names.push('boot');
      await berthOk(root, ['run', '-d', '--name', 'boot', '--restart', 'always', img.busybox, '--', 'sleep', '600']);
      const before = await eventually('boot to run', async () => {
        const v = await psOne(root, 'boot');
        return v.state === 'running' && v.pid ? v : undefined;
      });
      // What a power cut does: the container and its monitor die, mounts vanish, the --state tmpfs is empty.
      const conmon = Number(await readFile(join(root, 'run', 'monitor', before.id, 'conmon.pid'), 'utf8'));
      process.kill(conmon, 'SIGKILL');
      process.kill(before.pid!, 'SIGKILL');
      await eventually('the container process to die', async () => (await stat(`/proc/${before.pid}/cmdline`).then(() => undefined, () => true)));
      for (const m of (await mountsUnder(root)).reverse()) execFileSync('umount', [m]);
      await rm(join(root, 'run'), { recursive: true, force: true });

      daemons.push(await startDaemon(root));
      const after = await eventually('boot to run again', async () => {
        const v = await psOne(root, 'boot');
        return v.state === 'running' && v.pid && v.pid !== before.pid ? v : undefined;
      }, 30_000, 250);
      assert.equal(after.restarts, 1);
      assert.equal(after.id, before.id);
      assert.deepEqual(await runcList(root), [before.id]);
      const events = await storedEvents(root);
      assert.deepEqual(eventsOf(events, 'container.restart.scheduled', 'boot').map((e) => e.exitCode), [255]);
    });
  });

  test('berth events: --since SEQ prints only newer events; -f follows new ones until SIGTERM', async () => {
    await withRoot(async (root, names) => {
      names.push('noisy');
      const all = await storedEvents(root);
      assert.ok(all.length > 0, 'the pull recorded events');
      assert.deepEqual(all.map((e) => e.seq), all.map((_, i) => all[0]!.seq + i), 'numbered in order');
      const last = all.at(-1)!.seq;
      const since = await berthOk(root, ['-o', 'json', 'events', '--since', String(last - 1)]);
      assert.deepEqual(since.trim().split('\n').map((l) => (JSON.parse(l) as StoredEvent).seq), [last]);
      const text = await berthOk(root, ['events', '--since', String(last - 1)]);
      assert.match(text, new RegExp(`^\\s*${last} \\d{4}-\\d\\d-\\d\\dT\\S+ \\S+`));
      const bad = await runBerth(root, ['events', '--since', 'yesterday']);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /--since "yesterday" is not a sequence number/);

      const follower = startBerth(root, ['-o', 'json', 'events', '-f', '--since', String(last)]);
      try {
        let out = '';
        follower.child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
        await berthOk(root, ['create', '--name', 'noisy', img.busybox, '--', 'true']);
        await eventually('the follower to print container.created', async () => (out.includes('"container.created"') ? true : undefined));
        const first = JSON.parse(out.split('\n')[0]!) as StoredEvent;
        assert.equal(first.seq, last + 1);
        assert.deepEqual([first.event.type, (first.event as { name: string }).name], ['container.created', 'noisy']);
        follower.child.kill('SIGTERM');
        const res = await follower.done;
        assert.equal(res.code, 0, describeResult(res));
      } finally {
        follower.child.kill('SIGKILL');
      }
    });
  });

  test('a create killed midway (a container snapshot with no record) is removed when a daemon starts, unless a create holds its name', async () => {
    await withRoot(async (root, _names, daemons) => {
      const t = await openTestSystem(root);
      try {
        const { snapshotter } = await t.sys.snapshotter();
        await snapshotter.prepare('container-aaaaaaaaaaaa', undefined, { labels: { 'berth.io/container': 'killed' } });
        await snapshotter.prepare('container-bbbbbbbbbbbb', undefined, { labels: { 'berth.io/container': 'creating' } });
      } finally {
        await t.sys.close();
      }
      // A create in another process holds its name's lock from before its snapshot until its record.
      const creating = await acquireLock(join(root, 'run', 'locks', 'container-creating.lock'), { holder: { pid: process.pid, what: 'test: create creating' }, timeoutMs: 0, what: 'container "creating"' });
      try {
        daemons.push(await startDaemon(root));
        assert.deepEqual((await leftovers(root)).snapshots, ['container-bbbbbbbbbbbb'], 'the killed create is cleaned up, the one in progress is not');
      } finally {
        await creating.release();
      }
      await daemons.pop()!.kill();
      daemons.push(await startDaemon(root));
      assert.deepEqual((await leftovers(root)).snapshots, [], 'no create holds it now: an orphan too');
    });
  });

  test('a second daemon on the same --state fails at once naming the first', async () => {
    await withRoot(async (root, _names, daemons) => {
      const first = await startDaemon(root);
      daemons.push(first);
      const t0 = Date.now();
      const second = await runBerth(root, ['daemon']);
      assert.equal(second.code, 1, describeResult(second));
      // At once: no waiting for the lock (a loaded machine takes seconds to start node).
      assert.ok(Date.now() - t0 < 20_000, `the second daemon took ${Date.now() - t0} ms to fail`);
      assert.match(second.stderr, new RegExp(`is locked by berth daemon \\(pid ${first.child.pid}, since `));
      assert.equal(first.child.exitCode, null, 'the first daemon keeps running');
      const stopped = await first.stop();
      assert.equal(stopped.code, 0, describeResult(stopped));
      // Once the first is gone, a new one starts.
      daemons.push(await startDaemon(root));
    });
  });
});
