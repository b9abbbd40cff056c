/**
 * A private containerd for one benchmark run: its own root, state, socket and
 * a minimal config (version 2) under a directory the caller owns (a fresh
 * tmpfs), so it never touches a system containerd or a previous run's content.
 * Off: CRI, the snapshotters no benchmark uses, tracing; no TCP listener
 * (debug and metrics addresses empty). On: content, metadata, the overlayfs
 * snapshotter and the runtime v2 task service (io.containerd.runtime.v2.task,
 * which starts containerd-shim-runc-v2 per container), so `ctr run` works.
 * Shims put their sockets under /run/containerd/s/ (named by a hash of this
 * containerd's address) and runc's state under /run/containerd/runc/NAMESPACE;
 * a benchmark that runs containers uses its own namespace.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { vmHWMKiB } from './measure.js';

const execFileP = promisify(execFile);

export const CONTAINERD = '/usr/bin/containerd';
export const CTR = '/usr/bin/ctr';
export const CONTAINERD_SHIM = '/usr/bin/containerd-shim-runc-v2';
const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 10_000;

/** Plugins no benchmark here uses; disabling them keeps startup short and RSS honest. */
const DISABLED_PLUGINS = [
  'io.containerd.grpc.v1.cri',
  'io.containerd.snapshotter.v1.aufs',
  'io.containerd.snapshotter.v1.btrfs',
  'io.containerd.snapshotter.v1.devmapper',
  'io.containerd.snapshotter.v1.zfs',
  'io.containerd.tracing.processor.v1.otlp',
  'io.containerd.internal.v1.tracing',
];

export interface Containerd {
  /** The grpc socket, for `ctr --address`. */
  address: string;
  pid: number;
  root: string;
  /** Runs ctr against this containerd (untimed; for setup and checks), returning stdout. */
  ctr(args: readonly string[]): Promise<string>;
  /** containerd's peak resident set so far (VmHWM), KiB. */
  peakRssKiB(): Promise<number>;
  /** SIGTERM, wait for exit (SIGKILL after 10 s); idempotent. */
  stop(): Promise<void>;
}

export function containerdConfig(dir: string): string {
  const q = (s: string): string => JSON.stringify(s);
  return `version = 2
root = ${q(join(dir, 'root'))}
state = ${q(join(dir, 'state'))}
disabled_plugins = [${DISABLED_PLUGINS.map(q).join(', ')}]

[grpc]
  address = ${q(join(dir, 'containerd.sock'))}

[ttrpc]
  address = ${q(join(dir, 'containerd.sock.ttrpc'))}

[debug]
  address = ""
  level = "warn"

[metrics]
  address = ""
`;
}

/** Starts containerd with everything under `dir` (which must exist); resolves once `ctr version` answers. */
export async function startContainerd(dir: string): Promise<Containerd> {
  const address = join(dir, 'containerd.sock');
  const configPath = join(dir, 'config.toml');
  const logPath = join(dir, 'containerd.log');
  await mkdir(join(dir, 'root'), { recursive: true });
  await mkdir(join(dir, 'state'), { recursive: true });
  await writeFile(configPath, containerdConfig(dir));

  const logFd = openSync(logPath, 'a');
  const child: ChildProcess = spawn(
    CONTAINERD,
    ['--config', configPath, '--root', join(dir, 'root'), '--state', join(dir, 'state'), '--address', address],
    { stdio: ['ignore', logFd, logFd] },
  );
  closeSync(logFd);
  let exited: string | undefined;
  child.once('exit', (code, signal) => (exited = `exited with ${signal ?? `code ${code}`}`));
  const spawned = new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });

  const ctr = async (args: readonly string[]): Promise<string> =>
    (await execFileP(CTR, ['--address', address, ...args], { maxBuffer: 64 << 20 })).stdout;

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      const force = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      child.once('exit', () => {
        clearTimeout(force);
        resolve();
      });
      child.kill('SIGTERM');
    }));

  try {
    await spawned;
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      if (exited) throw new Error(`containerd ${exited}`);
      try {
        await ctr(['--connect-timeout', '1s', 'version']);
        break;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`containerd did not answer on ${address} within ${START_TIMEOUT_MS} ms: ${(err as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  } catch (err) {
    await stop();
    const log = (await readFile(logPath, 'utf8').catch(() => '')).trimEnd().split('\n').slice(-20).join('\n');
    throw new Error(`${(err as Error).message}; ${logPath} ends with:\n${log}`);
  }

  return { address, pid: child.pid!, root: join(dir, 'root'), ctr, peakRssKiB: () => vmHWMKiB(child.pid!), stop };
}

/**
 * Mounts image `ref` (already pulled and unpacked) read-only on `target`
 * with `ctr images mount`: an overlay of its snapshots, as a container
 * would see it. The returned function unmounts it and removes the view.
 */
export async function mountImage(cd: Containerd, ref: string, target: string): Promise<() => Promise<void>> {
  await mkdir(target, { recursive: true });
  await cd.ctr(['images', 'mount', ref, target]);
  let done: Promise<void> | undefined;
  return () => (done ??= cd.ctr(['images', 'unmount', '--rm', target]).then(() => undefined));
}
