/**
 * Containers through the real CLI, on real runc, conmon and overlayfs, with
 * images from Debian's docker-registry: output and exit codes, users, env
 * and args, kernel-enforced limits, stop, rm, exec, and bad input refused
 * at create time with nothing left behind. Every test has a fresh root and
 * removes its containers in finally.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runBerth, startBerth } from '../helpers/berth.js';
import { assertNothingLeft, berthOk, describeResult, eventually, leftovers, mountsUnder, ps, psOne, pushContainerImages, removeAll, runcList, type ContainerImages } from '../helpers/containers.js';
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

/** A fresh root; the named containers are removed (rm -f) afterwards whatever the test does. */
function withRoot(fn: (root: string, names: string[]) => Promise<void>): Promise<void> {
  return withTempDir('berth-ctr', async (root) => {
    const names: string[] = [];
    try {
      await fn(root, names);
    } finally {
      await removeAll(root, names);
    }
  });
}

async function exited(root: string, name: string, timeoutMs = 20_000) {
  return eventually(`${name} to exit`, async () => {
    const v = await psOne(root, name);
    return v.state === 'exited' ? v : undefined;
  }, timeoutMs);
}

async function running(root: string, name: string) {
  return eventually(`${name} to run`, async () => {
    const v = await psOne(root, name);
    return v.state === 'running' && v.pid ? v : undefined;
  });
}

/** Waits until the container's log has `text` on stdout (a script's "ready": its traps are set). */
async function logged(root: string, name: string, text: string): Promise<void> {
  await eventually(`${name} to print ${text}`, async () => ((await runBerth(root, ['logs', name])).stdout.includes(text) ? true : undefined));
}

/** Asserts a create-time error: exit 1, one error naming the container and the field, and nothing left on the host. */
async function assertRefused(root: string, args: string[], name: string, message: RegExp): Promise<void> {
  const res = await runBerth(root, args);
  assert.equal(res.code, 1, describeResult(res));
  assert.match(res.stderr, new RegExp(`berth: error: container "${name}": `));
  assert.match(res.stderr, message);
  assert.equal(res.stderr.match(/berth: error:/g)?.length, 1, `one error: ${res.stderr}`);
  assert.equal(res.stdout, '');
  await assertNothingLeft(root, `after ${args.join(' ')}`);
}

describe('output and exit codes', () => {
  test('foreground run prints stdout and stderr and exits with the container exit code; --rm leaves nothing', async () => {
    await withRoot(async (root, names) => {
      names.push('seven');
      const res = await runBerth(root, ['run', '--rm', '--name', 'seven', img.busybox, '--', 'sh', '-c', 'echo out-line; echo err-line >&2; exit 7']);
      assert.equal(res.code, 7, describeResult(res));
      assert.equal(res.stdout, 'out-line\n');
      assert.match(res.stderr, /^err-line$/m);
      assert.doesNotMatch(res.stderr, /out-line/);
      await assertNothingLeft(root, 'after run --rm');
    });
  });

  test('run -d --rm without a daemon: the container is removed when it exits (its monitor runs berth cleanup)', async () => {
    await withRoot(async (root, names) => {
      names.push('brief', 'steady');
      // Long enough to be seen running on a loaded machine.
      assert.equal(await berthOk(root, ['run', '-d', '--rm', '--name', 'brief', img.busybox, '--', 'sh', '-c', 'sleep 3']), 'brief\n');
      assert.equal((await psOne(root, 'brief')).state, 'running');
      await berthOk(root, ['run', '-d', '--rm', '--name', 'steady', img.busybox, '--', 'sleep', '60']);
      await eventually('brief to be removed', async () => ((await ps(root)).some((c) => c.name === 'brief') ? undefined : true), 20_000, 200);
      // A cleanup of a container that still runs leaves it alone.
      await berthOk(root, ['cleanup', 'steady']);
      assert.equal((await psOne(root, 'steady')).state, 'running');
      await berthOk(root, ['rm', '-f', 'steady']);
      await assertNothingLeft(root, 'after both');
    });
  });

  test('run --rm whose caller is SIGKILLed, without a daemon: the container runs on and is removed when it exits', async () => {
    await withRoot(async (root, names) => {
      names.push('abandoned');
      const { child, done } = startBerth(root, ['run', '--rm', '--name', 'abandoned', img.busybox, '--', 'sleep', '2']);
      await running(root, 'abandoned');
      child.kill('SIGKILL');
      assert.equal((await done).signal, 'SIGKILL');
      assert.equal((await psOne(root, 'abandoned')).state, 'running', 'the container outlives its caller');
      await eventually('abandoned to be removed after its exit', async () => ((await ps(root)).some((c) => c.name === 'abandoned') ? undefined : true), 20_000, 200);
      await assertNothingLeft(root, 'after the cleanup');
    });
  });

  test('foreground run of a container killed by SIGKILL exits 137, and ps shows signal 9', async () => {
    await withRoot(async (root, names) => {
      names.push('victim');
      // PID 1 of a PID namespace ignores a SIGKILL from inside it (sh -c 'kill -9 $$' just exits 0), so the kill comes from the host.
      const { child, done } = startBerth(root, ['run', '--name', 'victim', img.busybox, '--', 'sleep', '60']);
      try {
        const v = await running(root, 'victim');
        process.kill(v.pid!, 'SIGKILL');
        const res = await done;
        assert.equal(res.code, 137, describeResult(res));
        const after = await psOne(root, 'victim');
        assert.equal(after.state, 'exited');
        assert.equal(after.exitCode, 137);
        assert.equal(after.signal, 9);
        assert.equal(after.oomKilled, undefined);
      } finally {
        child.kill('SIGKILL');
      }
    });
  });

  test('SIGTERM to a foreground berth run is passed on to the container, and berth exits with its code', async () => {
    await withRoot(async (root, names) => {
      names.push('proxied');
      const { child, done } = startBerth(root, ['run', '--name', 'proxied', img.busybox, '--', 'sh', '-c', 'trap "echo got-term; exit 42" TERM; echo ready; while true; do sleep 0.1; done']);
      try {
        await logged(root, 'proxied', 'ready');
        child.kill('SIGTERM');
        const res = await done;
        assert.equal(res.code, 42, describeResult(res));
        assert.equal(res.stdout, 'ready\ngot-term\n');
      } finally {
        child.kill('SIGKILL');
      }
    });
  });

  test('berth logs: stdout to stdout, stderr to stderr, --tail N, and -f ends when the container exits', async () => {
    await withRoot(async (root, names) => {
      names.push('talker', 'slow');
      // Lines of one stream keep their order; across streams only with a pause (conmon reads two pipes).
      await berthOk(root, ['run', '-d', '--name', 'talker', img.busybox, '--', 'sh', '-c', 'for i in 1 2 3 4 5; do echo out $i; echo err $i >&2; done; sleep 0.3; echo last-err >&2; sleep 0.3; echo last-out']);
      await exited(root, 'talker');
      const all = await runBerth(root, ['logs', 'talker']);
      assert.equal(all.code, 0, describeResult(all));
      assert.equal(all.stdout, 'out 1\nout 2\nout 3\nout 4\nout 5\nlast-out\n');
      assert.equal(all.stderr, 'err 1\nerr 2\nerr 3\nerr 4\nerr 5\nlast-err\n');
      const tail = await runBerth(root, ['logs', '--tail', '2', 'talker']);
      assert.deepEqual([tail.code, tail.stdout, tail.stderr], [0, 'last-out\n', 'last-err\n']);
      const one = await runBerth(root, ['logs', '-n', '1', 'talker']);
      assert.deepEqual([one.code, one.stdout, one.stderr], [0, 'last-out\n', '']);
      const none = await runBerth(root, ['logs', '--tail', '0', 'talker']);
      assert.deepEqual([none.code, none.stdout, none.stderr], [0, '', '']);
      const bad = await runBerth(root, ['logs', '--tail', 'x', 'talker']);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /--tail "x"/);
      const unknown = await runBerth(root, ['logs', 'nope']);
      assert.equal(unknown.code, 1);
      assert.match(unknown.stderr, /container "nope" not found/);

      await berthOk(root, ['run', '-d', '--name', 'slow', img.busybox, '--', 'sh', '-c', 'echo first; sleep 3; echo second >&2; echo third']);
      const t0 = Date.now();
      const follow = await runBerth(root, ['logs', '-f', 'slow']);
      const took = Date.now() - t0;
      assert.equal(follow.code, 0, describeResult(follow));
      assert.equal(follow.stdout, 'first\nthird\n');
      assert.equal(follow.stderr, 'second\n');
      assert.ok(took >= 1500, `logs -f ended after ${took} ms, before the container exited`);
      assert.ok(took < 30_000, `logs -f took ${took} ms to notice the exit`);
      assert.equal((await psOne(root, 'slow')).state, 'exited');
      // -f on a container that already exited prints its log and ends.
      const again = await runBerth(root, ['logs', '-f', 'slow']);
      assert.deepEqual([again.code, again.stdout], [0, 'first\nthird\n']);
    });
  });
});

describe('users', () => {
  test('-u nobody, -u 65534:65534, the image User, and -u overriding the image User', async () => {
    await withRoot(async (root) => {
      const id = async (args: string[]): Promise<string> => {
        const res = await runBerth(root, ['run', '--rm', ...args]);
        assert.equal(res.code, 0, describeResult(res));
        return res.stdout.trim();
      };
      assert.equal(await id([img.busybox, '--', 'sh', '-c', 'echo $(id -u):$(id -g) $HOME']), '0:0 /root');
      assert.equal(await id(['-u', 'nobody', img.busybox, '--', 'sh', '-c', 'echo $(id -u):$(id -g) $HOME']), '65534:65534 /nonexistent');
      assert.equal(await id(['-u', '65534:65534', img.busybox, '--', 'sh', '-c', 'echo $(id -u):$(id -g)']), '65534:65534');
      assert.equal(await id(['-u', '1234', img.busybox, '--', 'sh', '-c', 'echo $(id -u):$(id -g)']), '1234:0');
      // The configured image runs as User nobody.
      assert.equal(await id(['--entrypoint', '/bin/sh', img.configured, '--', '-c', 'echo $(id -u):$(id -g)']), '65534:65534');
      assert.equal(await id(['-u', '0', '--entrypoint', '/bin/sh', img.configured, '--', '-c', 'echo $(id -u):$(id -g)']), '0:0');
    });
  });

  test('an unknown user is refused at create time naming the container and field, leaving nothing', async () => {
    await withRoot(async (root) => {
      await berthOk(root, ['image', 'pull', img.busybox]);
      await assertRefused(root, ['run', '--name', 'baduser', '-u', 'nosuch', img.busybox, '--', 'id'], 'baduser', /user "nosuch" is not in the image's \/etc\/passwd/);
      await assertRefused(root, ['create', '--name', 'badgroup', '-u', 'nobody:nosuchgroup', img.busybox, '--', 'id'], 'badgroup', /user "nobody:nosuchgroup": group "nosuchgroup" is not in the image's \/etc\/group/);
    });
  });
});

describe('env and args', () => {
  test("the image's Entrypoint, Cmd and Env; -e overrides Env; -- args replace Cmd; --entrypoint replaces Entrypoint and drops Cmd", async () => {
    await withRoot(async (root) => {
      const out = async (args: string[]): Promise<string> => {
        const res = await runBerth(root, ['run', '--rm', ...args]);
        assert.equal(res.code, 0, describeResult(res));
        return res.stdout;
      };
      assert.equal(await out([img.configured]), 'entry cmd\n');
      assert.equal(await out([img.configured, '--', 'a', 'b c']), 'entry a b c\n');
      // env with no arguments prints the environment; had Cmd been kept it would try to run "cmd" and fail.
      const env = (await out(['--entrypoint', '/bin/env', '-e', 'FOO=cli', '-e', 'NEW=x=y', img.configured])).split('\n').filter(Boolean).sort();
      assert.deepEqual(env, ['BAR=image', 'FOO=cli', 'HOME=/nonexistent', 'NEW=x=y', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin']);
      assert.equal(await out(['--entrypoint', '/bin/echo', img.configured, '--', 'only', 'args']), 'only args\n');
      const bad = await runBerth(root, ['run', '--rm', '-e', 'NOEQUALS', img.configured]);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /-e "NOEQUALS": expected KEY=VALUE/);
    });
  });
});

describe('limits enforced by the kernel', () => {
  test('--memory 16m: a process that needs more is OOM-killed: exit 137, oomKilled in ps', async () => {
    await withRoot(async (root, names) => {
      names.push('hog');
      const res = await runBerth(root, ['run', '--name', 'hog', '--memory', '16m', img.busybox, '--', 'sh', '-c', 'x=$(head -c 100000000 /dev/zero | busybox tr "\\0" a); echo survived']);
      assert.equal(res.code, 137, describeResult(res));
      assert.doesNotMatch(res.stdout, /survived/);
      const v = await psOne(root, 'hog');
      assert.equal(v.exitCode, 137);
      assert.equal(v.oomKilled, true);
    });
  });

  test('--pids-limit 5: the sixth process cannot fork', async () => {
    await withRoot(async (root) => {
      const script = 'for i in 1 2 3 4 5 6 7 8; do sleep 3 & done; wait; echo all-forked';
      const limited = await runBerth(root, ['run', '--rm', '--pids-limit', '5', img.busybox, '--', 'sh', '-c', script]);
      assert.notEqual(limited.code, 0, describeResult(limited));
      assert.match(limited.stderr, /can't fork/);
      assert.doesNotMatch(limited.stdout, /all-forked/);
      // The same script forks fine with room for it.
      const roomy = await runBerth(root, ['run', '--rm', '--pids-limit', '20', img.busybox, '--', 'sh', '-c', script]);
      assert.equal(roomy.code, 0, describeResult(roomy));
      assert.equal(roomy.stdout, 'all-forked\n');
    });
  });

  test('--read-only: the rootfs is read-only while a --tmpfs /tmp stays writable', async () => {
    await withRoot(async (root) => {
      const res = await runBerth(root, ['run', '--rm', '--read-only', '--tmpfs', '/tmp', img.busybox, '--', 'sh', '-c', 'touch /x || echo root-ro; touch /etc/y || echo etc-ro; echo hi > /tmp/z && cat /tmp/z']);
      assert.equal(res.code, 0, describeResult(res));
      assert.equal(res.stdout, 'root-ro\netc-ro\nhi\n');
      assert.match(res.stderr, /Read-only file system/);
      const rw = await runBerth(root, ['run', '--rm', img.busybox, '--', 'sh', '-c', 'touch /x && echo root-rw']);
      assert.deepEqual([rw.code, rw.stdout], [0, 'root-rw\n']);
    });
  });
});

describe('stop', () => {
  test('a container that traps TERM stops at once with its own exit code', async () => {
    await withRoot(async (root, names) => {
      names.push('trapper');
      await berthOk(root, ['run', '-d', '--name', 'trapper', img.busybox, '--', 'sh', '-c', 'trap "exit 42" TERM; echo ready; while true; do sleep 0.1; done']);
      await logged(root, 'trapper', 'ready');
      // Exit code 42, not 137, shows TERM stopped it; the time only shows it did not wait out the timeout (a loaded machine is slow).
      const t0 = Date.now();
      assert.equal(await berthOk(root, ['stop', '-t', '30', 'trapper']), 'trapper\n');
      const took = Date.now() - t0;
      assert.ok(took < 20_000, `stop took ${took} ms`);
      const v = await psOne(root, 'trapper');
      assert.deepEqual([v.state, v.desired, v.exitCode, v.signal], ['exited', 'stopped', 42, undefined]);
      assert.deepEqual(await runcList(root), [], 'a stopped container is gone from runc');
      // Stopping it again is fine.
      await berthOk(root, ['stop', 'trapper']);
    });
  });

  test('a container that ignores TERM is killed after -t seconds: 137', async () => {
    await withRoot(async (root, names) => {
      names.push('stubborn');
      await berthOk(root, ['run', '-d', '--name', 'stubborn', img.busybox, '--', 'sh', '-c', 'trap "" TERM; echo ready; while true; do sleep 0.1; done']);
      await logged(root, 'stubborn', 'ready');
      const t0 = Date.now();
      await berthOk(root, ['stop', '-t', '2', 'stubborn']);
      const took = Date.now() - t0;
      assert.ok(took >= 2000 && took < 20_000, `stop -t 2 took ${took} ms`);
      const v = await psOne(root, 'stubborn');
      assert.deepEqual([v.state, v.exitCode, v.signal], ['exited', 137, 9]);
    });
  });

  test('--stop-signal is the signal stop sends', async () => {
    await withRoot(async (root, names) => {
      names.push('usr1');
      await berthOk(root, ['run', '-d', '--name', 'usr1', '--stop-signal', 'SIGUSR1', img.busybox, '--', 'sh', '-c', 'trap "exit 10" USR1; trap "exit 20" TERM; echo ready; while true; do sleep 0.1; done']);
      await logged(root, 'usr1', 'ready');
      const t0 = Date.now();
      await berthOk(root, ['stop', '-t', '30', 'usr1']);
      assert.ok(Date.now() - t0 < 20_000, `stop took ${Date.now() - t0} ms`);
      assert.equal((await psOne(root, 'usr1')).exitCode, 10);
    });
  });
});

describe('create and start', () => {
  test('create makes a container that start runs; an exited container starts again, its log appended', async () => {
    await withRoot(async (root, names) => {
      names.push('again');
      assert.equal(await berthOk(root, ['create', '--name', 'again', img.busybox, '--', 'sh', '-c', 'echo ran; exit 4']), 'again\n');
      const created = await psOne(root, 'again');
      assert.deepEqual([created.state, created.desired, created.exitCode], ['created', 'stopped', undefined]);
      assert.equal((await runBerth(root, ['logs', 'again'])).stdout, '', 'nothing ran yet');
      assert.equal(await berthOk(root, ['start', 'again']), 'again\n');
      assert.equal((await exited(root, 'again')).exitCode, 4);
      await berthOk(root, ['start', 'again']);
      await eventually('the second run to finish', async () => ((await runBerth(root, ['logs', 'again'])).stdout === 'ran\nran\n' ? true : undefined));
      const v = await exited(root, 'again');
      assert.deepEqual([v.exitCode, v.restarts], [4, 0], 'a start by hand is not a restart');
      const unknown = await runBerth(root, ['start', 'nope']);
      assert.equal(unknown.code, 1);
      assert.match(unknown.stderr, /container "nope" not found/);
    });
  });
});

describe('after a reboot', () => {
  test('a container whose mounts and --state are gone (a reboot clears the tmpfs) starts, stops and is removed', async () => {
    await withRoot(async (root, names) => {
      names.push('survivor');
      await berthOk(root, ['create', '--name', 'survivor', img.busybox, '--', 'sh', '-c', 'echo back']);
      const { id } = await psOne(root, 'survivor');
      // What a reboot does: every mount gone, --state (a tmpfs) empty.
      for (const m of (await mountsUnder(root)).reverse()) execFileSync('umount', [m]);
      await rm(join(root, 'run'), { recursive: true, force: true });
      assert.deepEqual(await mountsUnder(root), []);

      assert.equal((await psOne(root, 'survivor')).state, 'created');
      await berthOk(root, ['start', 'survivor']);
      assert.equal((await exited(root, 'survivor')).exitCode, 0);
      assert.equal((await runBerth(root, ['logs', 'survivor'])).stdout, 'back\n');
      await berthOk(root, ['stop', 'survivor']);
      await rm(join(root, 'run'), { recursive: true, force: true });
      await berthOk(root, ['rm', 'survivor']);
      await assertNothingLeft(root, `after rm of ${id}`);
    });
  });
});

describe('rm', () => {
  test('rm of a running container needs -f; rm -f removes mounts, bundle, snapshot, log and record', async () => {
    await withRoot(async (root, names) => {
      names.push('doomed', 'other');
      await berthOk(root, ['run', '-d', '--name', 'doomed', img.busybox, '--', 'sleep', '60']);
      await berthOk(root, ['run', '-d', '--name', 'other', img.busybox, '--', 'sh', '-c', 'echo bye']);
      const v = await running(root, 'doomed');
      await exited(root, 'other');
      const before = await leftovers(root);
      assert.equal(before.mounts.filter((m) => m.includes(`/bundles/${v.id}/`)).length, 1, `mounts: ${before.mounts.join(' ')}`);
      assert.deepEqual(before.bundles.sort(), [v.id, (await psOne(root, 'other')).id].sort());
      assert.ok(before.logs.includes(`${v.id}.log`));
      assert.ok(before.snapshots.includes(`container-${v.id}`));

      const refused = await runBerth(root, ['rm', 'doomed']);
      assert.equal(refused.code, 1, describeResult(refused));
      assert.match(refused.stderr, /container "doomed" is running/);
      assert.match(refused.stderr, /hint: stop it first \(berth stop doomed\) or pass --force/);
      assert.equal((await running(root, 'doomed')).pid, v.pid, 'a refused rm leaves the container running');

      assert.equal(await berthOk(root, ['rm', '-f', 'doomed']), 'doomed\n');
      // An exited container goes without -f.
      assert.equal(await berthOk(root, ['rm', 'other']), 'other\n');
      await assertNothingLeft(root, 'after rm');
      await assert.rejects(stat(`/proc/${v.pid}`), 'the container process is gone');
      assert.deepEqual(await readdir(join(root, 'lib', 'bundles')), []);

      const again = await runBerth(root, ['rm', 'doomed']);
      assert.equal(again.code, 1);
      assert.match(again.stderr, /container "doomed" not found/);
    });
  });
});

describe('exec', () => {
  test('exec passes output and the exit code through; a stopped container is refused', async () => {
    await withRoot(async (root, names) => {
      names.push('host');
      await berthOk(root, ['run', '-d', '--name', 'host', '-e', 'FROM_RUN=1', img.busybox, '--', 'sleep', '60']);
      await running(root, 'host');
      const res = await runBerth(root, ['exec', '-e', 'FROM_EXEC=2', '-w', '/etc', 'host', '--', 'sh', '-c', 'echo out $FROM_EXEC $(pwd); echo err >&2; exit 5']);
      assert.equal(res.code, 5, describeResult(res));
      assert.equal(res.stdout, 'out 2 /etc\n');
      assert.equal(res.stderr, 'err\n');
      const ok = await runBerth(root, ['exec', 'host', '--', 'true']);
      assert.equal(ok.code, 0, describeResult(ok));
      const noCommand = await runBerth(root, ['exec', 'host']);
      assert.equal(noCommand.code, 1);
      assert.match(noCommand.stderr, /expected a command after --/);
      // The exec'd process runs in the container: it sees the container's init as PID 1.
      const pid1 = await runBerth(root, ['exec', 'host', '--', 'cat', '/proc/1/cmdline']);
      assert.equal(pid1.stdout.replace(/\0/g, ' ').trim(), 'sleep 60');

      await berthOk(root, ['stop', '-t', '1', 'host']);
      const refused = await runBerth(root, ['exec', 'host', '--', 'true']);
      assert.equal(refused.code, 1, describeResult(refused));
      assert.match(refused.stderr, /container "host" is not running/);
    });
  });
});

describe('bad input is refused at create time, leaving nothing', () => {
  test('a command that is not in the image, and an image without a command', async () => {
    await withRoot(async (root) => {
      await berthOk(root, ['image', 'pull', img.busybox]);
      await berthOk(root, ['image', 'pull', img.bare]);
      await assertRefused(root, ['run', '--name', 'nocmd', img.busybox, '--', 'no-such-program'], 'nocmd', /args: executable "no-such-program" is not in the image/);
      await assertRefused(root, ['create', '--name', 'noentry', '--entrypoint', '/bin/missing', img.busybox], 'noentry', /command: executable "\/bin\/missing" is not in the image/);
      await assertRefused(root, ['run', '--name', 'bare', img.bare], 'bare', /command: the image defines no Entrypoint or Cmd/);
    });
  });

  test('a missing bind source, and memory below 6 MiB', async () => {
    await withRoot(async (root) => {
      await berthOk(root, ['image', 'pull', img.busybox]);
      const missing = join(root, 'no-such-dir');
      await assertRefused(root, ['run', '--name', 'nobind', '-v', `${missing}:/data`, img.busybox, '--', 'true'], 'nobind', new RegExp(`mounts\\[0\\]\\.source: ${missing} does not exist on the host`));
      await assertRefused(root, ['run', '--name', 'tiny', '--memory', '5m', img.busybox, '--', 'true'], 'tiny', /resources\.memory: memory limit 5242880 is below the minimum of 6 MiB/);
      // A bind source that exists is mounted.
      const data = join(root, 'data');
      await mkdir(data);
      await writeFile(join(data, 'f'), 'from the host\n');
      const res = await runBerth(root, ['run', '--rm', '-v', `${data}:/data:ro`, img.busybox, '--', 'sh', '-c', 'cat /data/f; touch /data/g || echo ro']);
      assert.deepEqual([res.code, res.stdout], [0, 'from the host\nro\n'], describeResult(res));
    });
  });

  test('a name that is taken is refused without touching the first container', async () => {
    await withRoot(async (root, names) => {
      names.push('twin');
      await berthOk(root, ['create', '--name', 'twin', img.busybox, '--', 'true']);
      const first = await psOne(root, 'twin');
      const res = await runBerth(root, ['run', '--name', 'twin', img.busybox, '--', 'true']);
      assert.equal(res.code, 1, describeResult(res));
      assert.match(res.stderr, /container "twin" already exists/);
      assert.deepEqual((await ps(root)).map((c) => [c.name, c.id, c.state]), [['twin', first.id, 'created']]);
      assert.equal((await mountsUnder(root)).length, 1, 'only the first container is mounted');
    });
  });

  test('a name that is a path is refused by every command, and no lock file is made from it', async () => {
    await withRoot(async (root) => {
      // From --state/locks, container-../../../x.lock would be ROOT/x.lock.
      for (const args of [['stop', '../../../x'], ['rm', '-f', '../../../x'], ['start', 'a/b'], ['run', '--name', '../../../x', img.busybox, '--', 'true']]) {
        const res = await runBerth(root, args);
        assert.equal(res.code, 1, describeResult(res));
        assert.match(res.stderr, /berth: error: container name "[^"]*" is not valid/, args.join(' '));
      }
      assert.deepEqual((await readdir(root)).filter((f) => f.endsWith('.lock')), []);
      assert.deepEqual(await readdir(join(root, 'run', 'locks')).catch(() => []), []);
    });
  });
});
