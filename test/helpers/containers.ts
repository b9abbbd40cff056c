/**
 * Containers through the real CLI: fixture images pushed to a test
 * registry, `berth ps -o json` parsed, and what a container may leave
 * behind on the host (mounts, bundles, snapshots, logs), read without the
 * code under test where possible.
 */
import assert from 'node:assert/strict';
import { execFile, type ChildProcess } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ContainerView } from '../../src/containers/service.js';
import type { StoredEvent } from '../../src/metadata/store.js';
import { busyboxImage, busyboxLayerFiles, makeImage } from '../fixtures/images.js';
import { openTestSystem, runBerth, startBerth, type CliResult } from './berth.js';
import { pushImage } from './push.js';
import type { RegistryHandle } from './registry.js';

export interface ContainerImages {
  /** busybox with Cmd ["/bin/sh"] and the default PATH. */
  busybox: string;
  /** busybox with Entrypoint ["/bin/echo", "entry"], Cmd ["cmd"], Env FOO=image and BAR=image, User nobody. */
  configured: string;
  /** busybox with neither Entrypoint nor Cmd. */
  bare: string;
}

/** Pushes the container fixture images to the registry; returns their references. */
export async function pushContainerImages(reg: RegistryHandle): Promise<ContainerImages> {
  const base = await busyboxLayerFiles();
  await pushImage(reg.url, 'test/busybox', '1', await busyboxImage());
  await pushImage(
    reg.url,
    'test/configured',
    '1',
    await makeImage({
      layers: [base],
      config: {
        Entrypoint: ['/bin/echo', 'entry'],
        Cmd: ['cmd'],
        Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'FOO=image', 'BAR=image'],
        User: 'nobody',
      },
    }),
  );
  await pushImage(reg.url, 'test/bare', '1', await makeImage({ layers: [base], config: { Cmd: null } }));
  return { busybox: `${reg.host}/test/busybox:1`, configured: `${reg.host}/test/configured:1`, bare: `${reg.host}/test/bare:1` };
}

/** Runs berth and asserts exit 0; returns stdout. */
export async function berthOk(root: string, args: string[]): Promise<string> {
  const res = await runBerth(root, args);
  assert.equal(res.code, 0, `berth ${args.join(' ')} exited ${res.code}: ${res.stderr}`);
  return res.stdout;
}

export async function ps(root: string): Promise<ContainerView[]> {
  return JSON.parse(await berthOk(root, ['-o', 'json', 'ps'])) as ContainerView[];
}

export async function psOne(root: string, name: string): Promise<ContainerView> {
  const v = (await ps(root)).find((c) => c.name === name);
  assert.ok(v, `container ${name} is not in berth ps`);
  return v;
}

export async function storedEvents(root: string): Promise<StoredEvent[]> {
  const out = await berthOk(root, ['-o', 'json', 'events']);
  return out
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as StoredEvent);
}

/** Polls until check returns a value (not undefined), or fails after timeoutMs naming what was awaited. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 20_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(everyMs);
  }
}

/** Mount points under dir, from /proc/self/mountinfo (field 5, octal escapes decoded). */
export async function mountsUnder(dir: string): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  return info
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(' ')[4]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p === dir || p.startsWith(dir + '/'));
}

export interface Leftovers {
  mounts: string[];
  bundles: string[];
  logs: string[];
  /** Snapshot keys starting with container-. */
  snapshots: string[];
  /** Container records (what `berth ps` lists). */
  containers: string[];
  /** Containers runc knows under --state/runc. */
  runc: string[];
  /** Per-container lock files under --state/locks (container-NAME.lock, attached-NAME.lock). */
  locks: string[];
}

/** Everything a container leaves on the host of a test root (see startBerth: lib/ and run/). */
export async function leftovers(root: string): Promise<Leftovers> {
  const lib = join(root, 'lib');
  const ls = (d: string): Promise<string[]> => readdir(d).catch(() => []);
  const t = await openTestSystem(root);
  let snapshots: string[];
  let containers: string[];
  try {
    const { snapshotter } = await t.sys.snapshotter();
    snapshots = (await snapshotter.list()).map((s) => s.key).filter((k) => k.startsWith('container-'));
    containers = (await t.sys.metadata.containers.list()).map((r) => r.name);
  } finally {
    await t.sys.close();
  }
  return {
    mounts: await mountsUnder(root),
    bundles: await ls(join(lib, 'bundles')),
    logs: await ls(join(lib, 'logs')),
    snapshots,
    containers,
    runc: await runcList(root),
    locks: (await ls(join(root, 'run', 'locks'))).filter((f) => /^(container|attached)-/.test(f)),
  };
}

/** Asserts a container left nothing behind. */
export async function assertNothingLeft(root: string, what: string): Promise<void> {
  assert.deepEqual(await leftovers(root), { mounts: [], bundles: [], logs: [], snapshots: [], containers: [], runc: [], locks: [] }, what);
}

/** Container ids runc lists under the root's --state/runc. */
export async function runcList(root: string): Promise<string[]> {
  const out = await new Promise<string>((resolve, reject) =>
    execFile('runc', ['--root', join(root, 'run', 'runc'), 'list', '--format', 'json'], (err, stdout) => (err ? reject(err) : resolve(stdout))),
  );
  return ((JSON.parse(out || 'null') as Array<{ id: string }> | null) ?? []).map((c) => c.id);
}

/** berth rm -f of every named container; never throws (for finally blocks). */
export async function removeAll(root: string, names: string[]): Promise<void> {
  for (const n of names) await runBerth(root, ['rm', '-f', n]).catch(() => undefined);
}

export function describeResult(r: CliResult): string {
  return `exit ${r.code} signal ${r.signal}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;
}

export interface DaemonHandle {
  child: ChildProcess;
  done: Promise<CliResult>;
  /** stderr so far (the daemon logs at info). */
  stderr(): string;
  /** SIGTERM, then the result (the daemon exits 0, leaving containers running). */
  stop(): Promise<CliResult>;
  /** SIGKILL, then the result. */
  kill(): Promise<CliResult>;
}

/** Starts `berth daemon [args]` on the root and waits until it supervises (and serves its API). */
export async function startDaemon(root: string, logLevel: 'info' | 'debug' = 'info', args: string[] = []): Promise<DaemonHandle> {
  const { child, done } = startBerth(root, ['--log-level', logLevel, 'daemon', ...args]);
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const h: DaemonHandle = {
    child,
    done,
    stderr: () => err,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return done;
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      return done;
    },
  };
  const ready = await Promise.race([
    eventually('the daemon to supervise', async () => (err.includes('daemon supervising') ? true : undefined), 30_000, 50),
    done.then((r) => r),
  ]);
  if (ready !== true) throw new Error(`berth daemon exited before it was ready: ${describeResult(ready)}`);
  return h;
}
