import { randomBytes } from 'node:crypto';
import { mkdir, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
// The lookups only: archive/index.js would also load the layer reader and decompressors.
import { findExecutableInRoot } from '../archive/lookup.js';
import { readFileInRoot } from '../archive/read.js';
import { BerthError, isBerthError } from '../errors.js';
import type { EventPublisher } from '../events.js';
import { acquireLock, type Lock } from '../lock/index.js';
import type { Logger } from '../log.js';
import type { ContainerRecord, MetadataStore, RestartPolicy } from '../metadata/store.js';
import { isMountPoint, mountAll, unmount } from '../mount/index.js';
import type { Digest, ImageConfig } from '../oci/index.js';
import { generateSpec, stopSignal, type ContainerConfig, type RuntimeSpec } from '../runtime/spec.js';
import type { ContainerRuntime, ExitStatus } from '../runtime/runtime.js';
import type { Snapshotter } from '../snapshots/snapshotter.js';
import { DEFAULT_RESTART } from './restart.js';

/**
 * Container lifecycle: create (an active snapshot on the image's top chain
 * ID, mounted as the bundle's rootfs, and config.json), start, stop, remove,
 * and the status users see, merged from the record and the runtime.
 *
 * Contracts:
 * - Every operation on one container holds that container's lock (a flock
 *   under --state/locks), so `berth stop` and a daemon restarting the same
 *   container never interleave.
 * - `desired` is written before a stop or remove signals anything: an exit
 *   berth caused is never mistaken for a crash and restarted.
 * - Exits are processed idempotently (processExit): the record first, then
 *   the runtime's state deleted; a crash between the two repeats the same
 *   record. The restart count changes only when a restart is made.
 * - Failed creates leave nothing behind: snapshot, mount, bundle and
 *   record are removed again.
 */

/** Where a container's image comes from: resolved to a stored, unpacked image (images/ provides it). */
export interface ImageSource {
  resolve(ref: string): Promise<{ name: string; digest: Digest; config: ImageConfig; chainId: Digest }>;
}

export interface ContainerServiceDeps {
  metadata: MetadataStore;
  images: ImageSource;
  snapshotter: () => Promise<Snapshotter>;
  runtime: ContainerRuntime;
  events: EventPublisher;
  logger: Logger;
  /** --root: bundles/ and logs/ live here. */
  root: string;
  /** --state: locks/ live here. */
  state: string;
  pid: number;
  /** What this process is, for lock holders ("berth daemon"). */
  actor: string;
  now?: () => Date;
  /** Each container's log is rotated beyond this (default 10 MiB). */
  logMaxBytes?: number;
  lockTimeoutMs?: number;
  /**
   * The command line (argv) that runs `berth cleanup NAME` on this root and
   * state, for the monitor of an auto-remove container (`run --rm`): it
   * removes the container when it exits and no caller is there to, with or
   * without a daemon. Absent: only a daemon's supervisor does.
   */
  cleanupCommand?: (name: string) => readonly string[];
}

export interface CreateRequest {
  name: string;
  image: string;
  config: ContainerConfig;
  restart?: Partial<RestartPolicy>;
  labels?: Record<string, string>;
  /** The reconciler's mark: the spec hash and the desired spec the container is made from. */
  managed?: ContainerRecord['managed'];
  /** Removed when it exits (`run --rm`): recorded as AUTO_REMOVE_LABEL. */
  autoRemove?: boolean;
  /** No caller waits for its exit (`run -d`): with autoRemove, its monitor runs the cleanupCommand when it exits (in the foreground, only if its caller is gone by then). */
  detached?: boolean;
}

export type ContainerState = 'created' | 'running' | 'restarting' | 'exited';

/** What `berth ps` shows. */
export interface ContainerView {
  name: string;
  id: string;
  image: string;
  imageDigest: Digest;
  state: ContainerState;
  desired: 'running' | 'stopped';
  pid?: number;
  exitCode?: number;
  signal?: number;
  oomKilled?: boolean;
  restarts: number;
  startedAt?: string;
  finishedAt?: string;
  nextRestartAt?: string;
  lastError?: string;
  restart: RestartPolicy;
  labels: Record<string, string>;
  managed?: ContainerRecord['managed'];
}

/**
 * The label of a container made by `run --rm`: it is removed when it exits,
 * by its foreground caller or, when none is attached (a detached run, a
 * caller or daemon that died), by a daemon's supervisor (removeIfAutoRemoved).
 */
export const AUTO_REMOVE_LABEL = 'berth.io/auto-remove';

/** Docker's rule for container names. */
const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;
const SNAPSHOT_PREFIX = 'container-';
const MAX_ETC_BYTES = 1 << 20;
const DEFAULT_STOP_TIMEOUT_MS = 10_000;

/** Refuses a name that is not NAME, before any lock or file is made from it. */
function checkName(name: string): void {
  if (!NAME.test(name)) {
    throw new BerthError('INVALID_ARGUMENT', `container name "${name}" is not valid`, { hint: 'use letters, digits, _ . - (starting with a letter or digit), at most 128 characters' });
  }
}

export class ContainerService {
  private readonly now: () => Date;
  /** Names whose foreground claim (attachForRemoval, removeIfAutoRemoved) this process holds. */
  private readonly claims = new Set<string>();

  constructor(private readonly deps: ContainerServiceDeps) {
    this.now = deps.now ?? (() => new Date());
  }

  bundleDir(id: string): string {
    return join(this.deps.root, 'bundles', id);
  }

  logPath(rec: Pick<ContainerRecord, 'id'>): string {
    return join(this.deps.root, 'logs', `${rec.id}.log`);
  }

  private snapshotKey(id: string): string {
    return SNAPSHOT_PREFIX + id;
  }

  /** The container's lock: one operation at a time across processes. */
  private async locked<T>(name: string, what: string, fn: () => Promise<T>): Promise<T> {
    // acquireLock makes locks/ (owner-only) when --state is a fresh tmpfs without it.
    const lock = await acquireLock(this.lockPath(name), {
      holder: { pid: this.deps.pid, what: `${this.deps.actor}: ${what} ${name}` },
      timeoutMs: this.deps.lockTimeoutMs ?? 30_000,
      what: `container "${name}"`,
    });
    try {
      return await fn();
    } finally {
      await lock.release({ remove: await this.gone(name) });
    }
  }

  /**
   * Whether no container has this name (any more): its lock files can go, or
   * they would pile up under --state/locks, two per name ever used (`run --rm`
   * without --name makes a new one each time).
   */
  private async gone(name: string): Promise<boolean> {
    return (await this.deps.metadata.containers.get(name).catch(() => 'unknown')) === undefined;
  }

  async record(name: string): Promise<ContainerRecord> {
    const rec = await this.deps.metadata.containers.get(name);
    if (!rec) throw new BerthError('NOT_FOUND', `container "${name}" not found`, { hint: 'list containers with: berth ps', details: { container: name } });
    return rec;
  }

  // --- create -------------------------------------------------------------

  async create(req: CreateRequest): Promise<ContainerRecord> {
    return this.locked(req.name, 'create', () => this.createLocked(req, 'stopped'));
  }

  /**
   * create, then start, as one operation under the container's lock (`berth
   * run`, the reconciler's new containers). The start skips what starting an
   * existing container must look at: a new container has no runtime state,
   * its rootfs was just mounted, and its record says running from the start.
   * A failed start leaves the container created, as create then start
   * would, except one that was to be removed when it exits (`run --rm`).
   */
  async run(req: CreateRequest): Promise<ContainerRecord> {
    return this.locked(req.name, 'run', async () => {
      const created = await this.createLocked(req, 'running');
      const cleanup = req.autoRemove ? this.exitCleanup(req.name, req.detached === true) : undefined;
      try {
        return await this.startLocked(req.name, false, created, cleanup);
      } catch (err) {
        if (req.autoRemove) await this.removeLocked(req.name, { force: true }).catch(() => {});
        throw err;
      }
    });
  }

  private async createLocked(req: CreateRequest, desired: ContainerRecord['desired']): Promise<ContainerRecord> {
    // Side by side; a name that is taken is the error to report, whatever the image.
    const [existing, resolved] = await Promise.allSettled([this.deps.metadata.containers.get(req.name), this.deps.images.resolve(req.image)]);
    if (existing.status === 'rejected') throw existing.reason;
    if (existing.value) {
      throw new BerthError('ALREADY_EXISTS', `container "${req.name}" already exists`, { hint: `choose another name, or remove it first: berth rm ${req.name}`, details: { container: req.name } });
    }
    if (resolved.status === 'rejected') throw resolved.reason;
    const image = resolved.value;
    const id = randomBytes(6).toString('hex');
    const restart: RestartPolicy = { ...DEFAULT_RESTART, ...stripUndefined(req.restart ?? {}) };
    const bundle = this.bundleDir(id);
    const snapshotter = await this.deps.snapshotter();
    const key = this.snapshotKey(id);
    let prepared = false;
    try {
      // Side by side, each settled before a failure is cleaned up (a snapshot still being made would be left).
      const [snapshot, ...dirs] = await Promise.allSettled([
        snapshotter.prepare(key, image.chainId, { labels: { 'berth.io/container': req.name } }),
        mkdir(join(this.deps.root, 'logs'), { recursive: true, mode: 0o700 }),
        mkdir(bundle, { recursive: true, mode: 0o700 }),
      ]);
      if (snapshot.status === 'rejected') throw snapshot.reason;
      prepared = true;
      for (const d of dirs) if (d.status === 'rejected') throw d.reason;
      const mounts = snapshot.value;
      const rootfs = join(bundle, 'rootfs');
      await mountAll(mounts, rootfs);
      const spec = await this.buildSpec(req.name, id, image.config, req.config, rootfs);
      await writeFile(join(bundle, 'config.json'), JSON.stringify(spec, null, 2) + '\n', { mode: 0o600 });
      const record = await this.deps.metadata.containers.create({
        name: req.name,
        id,
        image: image.name,
        imageDigest: image.digest,
        chainId: image.chainId,
        config: req.config as Record<string, unknown>,
        restart,
        stopSignal: stopSignal(image.config, req.config),
        labels: { ...req.labels, ...(req.autoRemove ? { [AUTO_REMOVE_LABEL]: 'true' } : {}) },
        desired,
        // Made to run (run()): started now, as far as the record goes; a failed start takes it back.
        status: { restartCount: 0, ...(desired === 'running' ? { startedAt: this.now().toISOString() } : {}) },
        ...(req.managed ? { managed: req.managed } : {}),
      });
      this.deps.events.publish({ type: 'container.created', name: req.name, id, image: image.name, digest: image.digest });
      return record;
    } catch (err) {
      await this.removeFiles(id, prepared).catch((e: Error) => this.deps.logger.warn('cleaning up a failed create', { container: req.name, error: e.message }));
      throw err;
    }
  }

  /** The runtime spec, with every check that can fail before anything runs: user, command, bind sources. */
  private async buildSpec(name: string, id: string, image: ImageConfig, config: ContainerConfig, rootfs: string): Promise<RuntimeSpec> {
    const [passwd, group] = await Promise.all(['/etc/passwd', '/etc/group'].map((f) => readFileInRoot(rootfs, f, MAX_ETC_BYTES)));
    const files = { passwd: passwd?.toString('utf8'), group: group?.toString('utf8') };
    const spec = generateSpec(image, config, { files, cgroupsPath: `/berth/${id}`, name });
    const command = spec.process.args[0]!;
    const path = spec.process.env.find((e) => e.startsWith('PATH='))?.slice(5) ?? '';
    if (!findExecutableInRoot(rootfs, command, path, spec.process.cwd)) {
      const field = config.command ? 'command' : config.args && !image.config?.Entrypoint ? 'args' : "the image's Entrypoint/Cmd";
      throw new BerthError('INVALID_ARGUMENT', `container "${name}": ${field}: executable "${command}" is not in the image${command.includes('/') ? '' : ` (PATH=${path})`}`, {
        hint: 'check the command, or the image it runs in',
        details: { container: name, field, command },
      });
    }
    for (const [i, m] of (config.mounts ?? []).entries()) {
      if (m.type !== 'bind') continue;
      if (!(await stat(m.source).catch(() => undefined))) {
        throw new BerthError('INVALID_ARGUMENT', `container "${name}": mounts[${i}].source: ${m.source} does not exist on the host`, {
          hint: 'create it first, or fix the path',
          details: { container: name, field: `mounts[${i}].source` },
        });
      }
    }
    return spec;
  }

  /** Unmounts the rootfs and removes the bundle and the snapshot (each step tolerates what is already gone). */
  private async removeFiles(id: string, snapshot = true): Promise<void> {
    const bundle = this.bundleDir(id);
    const rootfs = join(bundle, 'rootfs');
    await unmount(rootfs).catch(() => unmount(rootfs, { lazy: true }));
    // rootfs is removed with rmdir only: should a mount still be there, nothing behind it is deleted.
    await rmdir(rootfs).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw new BerthError('FAILED_PRECONDITION', `cannot remove ${rootfs}: ${err.message}`, { cause: err });
    });
    await rm(bundle, { recursive: true, force: true });
    if (snapshot) {
      const snapshotter = await this.deps.snapshotter();
      await snapshotter.remove(this.snapshotKey(id)).catch((err: unknown) => {
        if (!isBerthError(err, 'NOT_FOUND')) throw err;
      });
    }
  }

  /** Changes what needs no new container: the restart policy, labels, the reconciler's mark. */
  async updateSettings(name: string, settings: { restart?: Partial<RestartPolicy>; labels?: Record<string, string>; managed?: ContainerRecord['managed'] }): Promise<ContainerRecord> {
    return this.locked(name, 'update', () =>
      this.deps.metadata.containers.update(name, (r) => ({
        ...r,
        ...(settings.restart ? { restart: { ...r.restart, ...stripUndefined(settings.restart) } } : {}),
        ...(settings.labels ? { labels: settings.labels } : {}),
        ...(settings.managed ? { managed: settings.managed } : {}),
      })),
    );
  }

  // --- start --------------------------------------------------------------

  async start(name: string): Promise<ContainerRecord> {
    return this.locked(name, 'start', () => this.startLocked(name, false));
  }

  /** A restart by the restart policy: counted, and skipped when the user stopped or removed the container meanwhile. */
  async restart(name: string): Promise<ContainerRecord | undefined> {
    return this.locked(name, 'restart', async () => {
      const rec = await this.deps.metadata.containers.get(name);
      if (!rec || rec.desired !== 'running' || !rec.status.nextRestartAt) return undefined;
      return this.startLocked(name, true);
    });
  }

  /** Starts the container; `created` is its record when run() has just made it (desired running, its start time in it, rootfs mounted, nothing in the runtime). */
  private async startLocked(name: string, counted: boolean, created?: ContainerRecord, exitCommand?: readonly string[]): Promise<ContainerRecord> {
    const { runtime, metadata } = this.deps;
    const rec = created ?? (await this.prepareStart(name, counted));
    try {
      const { pid } = await runtime.create(rec.id, {
        bundle: this.bundleDir(rec.id),
        logPath: this.logPath(rec),
        logMaxBytes: this.deps.logMaxBytes ?? 10 * 1024 * 1024,
        cgroupsPath: `/berth/${rec.id}`,
        ...(exitCommand ? { exitCommand } : {}),
      });
      await runtime.start(rec.id);
      // A container run() just made has its start time in the record it was made with: one durable write fewer.
      const started = created
        ? rec
        : await metadata.containers.update(name, (r) => ({
            ...r,
            status: {
              restartCount: r.status.restartCount,
              startedAt: this.now().toISOString(),
              ...(r.status.backoffMs !== undefined ? { backoffMs: r.status.backoffMs } : {}),
            },
          }));
      this.deps.events.publish({ type: 'container.started', name, id: rec.id, pid, restartCount: started.status.restartCount });
      return started;
    } catch (err) {
      await runtime.delete(rec.id, { force: true }).catch(() => {});
      const message = err instanceof Error ? err.message : String(err);
      await metadata.containers
        .update(name, (r) => ({ ...r, status: { ...r.status, lastError: message, nextRestartAt: undefined, ...(created ? { startedAt: undefined } : {}) } }))
        .catch(() => {});
      throw err;
    }
  }

  /** An existing container, ready to start: a run before it processed and deleted from the runtime, its rootfs mounted, its record saying running. */
  private async prepareStart(name: string, counted: boolean): Promise<ContainerRecord> {
    const { runtime, metadata } = this.deps;
    const rec = await this.record(name);
    const st = await runtime.state(rec.id);
    if (st?.status === 'running') throw new BerthError('FAILED_PRECONDITION', `container "${name}" is already running`, { details: { container: name } });
    if (st) {
      // A previous run that stopped: record its exit before its state goes.
      if (st.status === 'stopped') await this.processExitLocked(name);
      await runtime.delete(rec.id, { force: true });
    }
    await this.ensureRootfs(rec);
    // A restart is counted when it is attempted, before the container can be seen running again.
    return metadata.containers.update(name, (r) => ({
      ...r,
      desired: 'running',
      status: { ...r.status, restartCount: r.status.restartCount + (counted ? 1 : 0), nextRestartAt: undefined },
    }));
  }

  /** Mounts the snapshot on bundle/rootfs when it is not (after a reboot, mounts are gone). */
  private async ensureRootfs(rec: ContainerRecord): Promise<void> {
    const rootfs = join(this.bundleDir(rec.id), 'rootfs');
    if (await isMountPoint(rootfs)) return;
    if (!(await stat(join(this.bundleDir(rec.id), 'config.json')).catch(() => undefined))) {
      throw new BerthError('CORRUPT', `container "${rec.name}": its bundle ${this.bundleDir(rec.id)} is incomplete (a create was interrupted)`, { hint: `remove it and create it again: berth rm ${rec.name}` });
    }
    const snapshotter = await this.deps.snapshotter();
    await mountAll(await snapshotter.mounts(this.snapshotKey(rec.id)), rootfs);
  }

  // --- exits --------------------------------------------------------------

  /**
   * Records the exit of the container's last run, if it exited and was not
   * recorded yet, and deletes its runtime state. Returns the exit, or
   * undefined when the container has not exited (or was already processed).
   */
  async processExit(name: string): Promise<ExitStatus | undefined> {
    return this.locked(name, 'record exit of', () => this.processExitLocked(name));
  }

  private async processExitLocked(name: string): Promise<ExitStatus | undefined> {
    const { runtime, metadata } = this.deps;
    const rec = await metadata.containers.get(name);
    if (!rec) return undefined;
    const exit = await runtime.exitStatus(rec.id);
    if (!exit) return undefined;
    await metadata.containers.update(name, (r) => ({
      ...r,
      status: {
        ...r.status,
        finishedAt: exit.at.toISOString(),
        exitCode: exit.code,
        signal: exit.signal,
        oomKilled: exit.oomKilled,
      },
    }));
    await runtime.delete(rec.id, { force: true });
    this.publishExit(rec, exit);
    return exit;
  }

  private publishExit(rec: ContainerRecord, exit: ExitStatus): void {
    const ranMs = rec.status.startedAt ? exit.at.getTime() - Date.parse(rec.status.startedAt) : undefined;
    this.deps.events.publish({
      type: 'container.exited',
      name: rec.name,
      id: rec.id,
      exitCode: exit.code,
      ...(exit.signal !== undefined ? { signal: exit.signal } : {}),
      oomKilled: exit.oomKilled,
      ...(ranMs !== undefined ? { ranMs } : {}),
    });
  }

  /**
   * Claims the removal of an auto-remove container when it exits, for a
   * foreground caller (`run --rm`), until the returned release: a flock
   * under --state/locks, so a supervisor in any process leaves the exit to
   * the caller, whose remove() tells the exit and deletes the runtime
   * state beside the unmount. Taken before the container starts, so no
   * exit comes first. A caller that dies lets go of it with its process.
   */
  async attachForRemoval(name: string): Promise<() => Promise<void>> {
    const lock = await acquireLock(this.attachLockPath(name), {
      holder: { pid: this.deps.pid, what: `${this.deps.actor}: run --rm ${name}` },
      timeoutMs: this.deps.lockTimeoutMs ?? 30_000,
      what: `the foreground of container "${name}"`,
    });
    return this.claimed(name, lock);
  }

  /** Notes a claim this process holds (removeLocked leaves its file to it); the release removes the file once no container has the name. */
  private claimed(name: string, lock: Lock): () => Promise<void> {
    this.claims.add(name);
    return async () => {
      this.claims.delete(name);
      await lock.release({ remove: await this.gone(name) });
    };
  }

  /**
   * For a supervisor: removes the container if it is an auto-remove one
   * (AUTO_REMOVE_LABEL) that has exited and that no foreground caller
   * claims. True when the container is such a one (removed now, or left to
   * its caller); false for any other container, whose exit is processed as
   * usual.
   */
  async removeIfAutoRemoved(name: string): Promise<boolean> {
    const rec = await this.deps.metadata.containers.get(name);
    if (!rec || rec.labels[AUTO_REMOVE_LABEL] !== 'true') return false;
    const claim = await this.tryLock(this.attachLockPath(name), `remove ${name}`, `the foreground of container "${name}"`);
    if (!claim) return true; // its caller removes it
    const release = this.claimed(name, claim);
    try {
      const st = await this.deps.runtime.state(rec.id);
      if (st?.status === 'running' || st?.status === 'created') return true; // not exited (yet): its exit comes back here
      await this.remove(name, { force: true });
      this.deps.logger.info('removed an auto-remove container after its exit', { container: name });
      return true;
    } finally {
      await release();
    }
  }

  /**
   * What the monitor of an auto-remove container runs when it exits, given
   * a cleanupCommand. Detached: `berth cleanup NAME`. In the foreground the
   * caller removes it, holding the name's claim (attachForRemoval); the
   * monitor's shell starts `berth cleanup` only when that claim is free at
   * the exit (its caller was killed), which spares a node start after every
   * foreground run. The cleanup tries the claim itself: the check only
   * filters.
   */
  private exitCleanup(name: string, detached: boolean): readonly string[] | undefined {
    const command = this.deps.cleanupCommand?.(name);
    if (!command || detached) return command;
    return ['/bin/sh', '-c', 'claim=$1; shift; [ -e "$claim" ] && flock -n "$claim" true && exec "$@"; exit 0', 'berth-cleanup', this.attachLockPath(name), ...command];
  }

  /** The lock of a container's operations; a name that is not a container name is refused (it would be a path). */
  private lockPath(name: string): string {
    checkName(name);
    return join(this.deps.state, 'locks', `container-${name}.lock`);
  }

  private attachLockPath(name: string): string {
    checkName(name);
    return join(this.deps.state, 'locks', `attached-${name}.lock`);
  }

  /**
   * Records that a restart is due (the supervisor keeps the timer). False
   * when the container is no longer to run (a stop came in between): then
   * nothing is due.
   */
  async scheduleRestart(name: string, at: Date, backoffMs: number): Promise<boolean> {
    const rec = await this.deps.metadata.containers.update(name, (r) => (r.desired === 'running' ? { ...r, status: { ...r.status, nextRestartAt: at.toISOString(), backoffMs } } : undefined));
    return rec.desired === 'running' && rec.status.nextRestartAt === at.toISOString();
  }

  /** The restart policy gave up, or does not restart: the container stays exited. */
  async settle(name: string): Promise<void> {
    await this.deps.metadata.containers.update(name, (r) => ({ ...r, status: { ...r.status, nextRestartAt: undefined } }));
  }

  /**
   * Waits until the container's current run exits and returns its exit,
   * recorded by this process or another (a daemon). Event-driven: woken by
   * the runtime's exit watch; a slow re-check covers a missed event.
   */
  async waitExit(name: string, signal?: AbortSignal): Promise<ExitStatus> {
    const rec = await this.record(name);
    let wake: () => void = () => {};
    const stop = this.deps.runtime.watchExits((id) => id === rec.id && wake());
    try {
      for (;;) {
        if (signal?.aborted) throw new BerthError('CANCELLED', `stopped waiting for container "${name}"`);
        const exit = await this.deps.runtime.exitStatus(rec.id);
        if (exit) return exit;
        const recorded = await this.recordedExit(name);
        if (recorded) return recorded;
        const st = await this.deps.runtime.state(rec.id);
        if (!st) {
          // Processed by another process between the two reads, or never started.
          const late = await this.recordedExit(name);
          if (late) return late;
          throw new BerthError('FAILED_PRECONDITION', `container "${name}" is not running`, { details: { container: name } });
        }
        if (st.status === 'stopped') {
          const processed = await this.processExit(name);
          if (processed) return processed;
        }
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 2000);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
          signal?.addEventListener('abort', () => wake(), { once: true });
        });
      }
    } finally {
      stop();
    }
  }

  /** The exit of the current run, when some process already recorded it. */
  private async recordedExit(name: string): Promise<ExitStatus | undefined> {
    const now = await this.deps.metadata.containers.get(name);
    if (!now) throw new BerthError('NOT_FOUND', `container "${name}" was removed`);
    const s = now.status;
    if (!s.finishedAt || s.exitCode === undefined || (s.startedAt && s.finishedAt < s.startedAt)) return undefined;
    return { code: s.exitCode, ...(s.signal !== undefined ? { signal: s.signal } : {}), oomKilled: s.oomKilled ?? false, at: new Date(s.finishedAt) };
  }

  // --- stop and remove ----------------------------------------------------

  /** Stops the container: its stop signal, then SIGKILL after timeoutMs. A container that is not running is fine. */
  async stop(name: string, timeoutMs = DEFAULT_STOP_TIMEOUT_MS): Promise<ExitStatus | undefined> {
    return this.locked(name, 'stop', async () => {
      const rec = await this.deps.metadata.containers.update(name, (r) => ({ ...r, desired: 'stopped', status: { ...r.status, nextRestartAt: undefined } }));
      const exit = await this.stopLocked(rec, timeoutMs);
      this.deps.events.publish({ type: 'container.stopped', name, id: rec.id });
      return exit;
    });
  }

  private async stopLocked(rec: ContainerRecord, timeoutMs: number): Promise<ExitStatus | undefined> {
    const { runtime } = this.deps;
    const st = await runtime.state(rec.id);
    if (!st) return undefined;
    if (st.status === 'running' || st.status === 'paused') {
      await runtime.kill(rec.id, rec.stopSignal);
      if (!(await this.exited(rec.id, timeoutMs))) {
        this.deps.logger.info('container did not stop in time; killing it', { container: rec.name, timeoutMs });
        await runtime.kill(rec.id, 9);
        await this.exited(rec.id, 10_000);
      }
    }
    return this.processExitLocked(rec.name);
  }

  /** Whether the init process exited within timeoutMs, woken by the exit watch. */
  private async exited(id: string, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    let wake: () => void = () => {};
    const stop = this.deps.runtime.watchExits((x) => x === id && wake());
    try {
      for (;;) {
        if (await this.deps.runtime.exitStatus(id)) return true;
        const st = await this.deps.runtime.state(id);
        if (!st || st.status === 'stopped') return true;
        const left = deadline - Date.now();
        if (left <= 0) return false;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, Math.min(left, 500));
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    } finally {
      stop();
    }
  }

  /** Removes the container: runtime state, rootfs mount, snapshot, bundle, log and record. A running one needs `force`. */
  async remove(name: string, opts: { force?: boolean } = {}): Promise<void> {
    await this.locked(name, 'remove', () => this.removeLocked(name, opts));
  }

  private async removeLocked(name: string, opts: { force?: boolean }): Promise<void> {
    const rec = await this.record(name);
    const st = await this.deps.runtime.state(rec.id);
    if (st && (st.status === 'running' || st.status === 'paused') && !opts.force) {
      throw new BerthError('FAILED_PRECONDITION', `container "${name}" is running`, { hint: `stop it first (berth stop ${name}) or pass --force`, details: { container: name } });
    }
    await this.deps.metadata.containers.update(name, (r) => ({ ...r, desired: 'stopped', status: { ...r.status, nextRestartAt: undefined } }));
    if (st?.status === 'running' || st?.status === 'paused') {
      // Killed and waited for, so conmon has written its exit record before delete clears it.
      await this.deps.runtime.kill(rec.id, 9).catch(() => {});
      await this.exited(rec.id, 10_000);
    }
    // An exit not processed yet (`run --rm` leaves it to this) is told before its record goes with the runtime state.
    const exit = st ? await this.deps.runtime.exitStatus(rec.id) : undefined;
    // The runtime's state and the files are independent: removed side by side.
    await Promise.all([st ? this.deps.runtime.delete(rec.id, { force: true }) : undefined, this.removeFiles(rec.id), rm(this.logPath(rec), { force: true })]);
    await this.deps.metadata.containers.delete(name);
    // A claim this process holds (a foreground run --rm, the supervisor's removal) removes its file as it lets go.
    if (!this.claims.has(name)) await this.dropAttachLock(name);
    if (exit) this.publishExit(rec, exit);
    this.deps.events.publish({ type: 'container.removed', name, id: rec.id });
  }

  /** Removes the file of the foreground claim on a removed container's name, unless a caller holds it (it removes it when it lets go). */
  private async dropAttachLock(name: string): Promise<void> {
    try {
      await (await this.tryLock(this.attachLockPath(name), `rm ${name}`, `the foreground of container "${name}"`))?.release({ remove: true });
    } catch (err) {
      this.deps.logger.warn('could not remove a lock file', { container: name, error: (err as Error).message });
    }
  }

  /** The lock at path if no one holds it, else undefined: for work that another holder does or makes moot. */
  private async tryLock(path: string, doing: string, what: string): Promise<Lock | undefined> {
    try {
      return await acquireLock(path, { holder: { pid: this.deps.pid, what: `${this.deps.actor}: ${doing}` }, timeoutMs: 0, what });
    } catch (err) {
      if (isBerthError(err, 'LOCKED')) return undefined;
      throw err;
    }
  }

  // --- status -------------------------------------------------------------

  async list(): Promise<ContainerView[]> {
    const records = await this.deps.metadata.containers.list();
    return Promise.all(records.map((r) => this.view(r)));
  }

  async get(name: string): Promise<ContainerView> {
    return this.view(await this.record(name));
  }

  private async view(rec: ContainerRecord): Promise<ContainerView> {
    const st = await this.deps.runtime.state(rec.id);
    const exit = st ? await this.deps.runtime.exitStatus(rec.id, st) : undefined;
    const s = rec.status;
    let state: ContainerState;
    if (st && (st.status === 'running' || st.status === 'paused') && !exit) state = 'running';
    else if (rec.desired === 'running' && s.nextRestartAt) state = 'restarting';
    else if (exit || s.finishedAt) state = 'exited';
    else state = 'created';
    const v: ContainerView = {
      name: rec.name,
      id: rec.id,
      image: rec.image,
      imageDigest: rec.imageDigest,
      state,
      desired: rec.desired,
      restarts: s.restartCount,
      restart: rec.restart,
      labels: rec.labels,
      ...(rec.managed ? { managed: rec.managed } : {}),
    };
    if (state === 'running' && st) v.pid = st.pid;
    // An exit not yet processed (no daemon ran) is shown from the exit record.
    const code = exit?.code ?? s.exitCode;
    if (state !== 'running' && code !== undefined) v.exitCode = code;
    const sig = exit ? exit.signal : s.signal;
    if (state !== 'running' && sig !== undefined) v.signal = sig;
    const oom = exit?.oomKilled ?? s.oomKilled;
    if (state !== 'running' && oom) v.oomKilled = true;
    if (s.startedAt) v.startedAt = s.startedAt;
    const finished = exit ? exit.at.toISOString() : s.finishedAt;
    if (state !== 'running' && finished) v.finishedAt = finished;
    if (state === 'restarting' && s.nextRestartAt) v.nextRestartAt = s.nextRestartAt;
    if (s.lastError) v.lastError = s.lastError;
    return v;
  }

  /**
   * Containers whose snapshot or bundle has no record (a create killed
   * midway), removed. Returns how many. A create in progress (in another
   * process: its snapshot exists before its record) holds the name's lock,
   * named by the snapshot's label: such a one is left alone.
   */
  async removeOrphans(): Promise<number> {
    const recorded = async (): Promise<Set<string>> => new Set((await this.deps.metadata.containers.list()).map((r) => r.id));
    const ids = await recorded();
    const snapshotter = await this.deps.snapshotter();
    let n = 0;
    for (const s of await snapshotter.list()) {
      if (!s.key.startsWith(SNAPSHOT_PREFIX) || ids.has(s.key.slice(SNAPSHOT_PREFIX.length))) continue;
      const id = s.key.slice(SNAPSHOT_PREFIX.length);
      const name = s.labels['berth.io/container'];
      const named = name !== undefined && NAME.test(name);
      const lock = named ? await this.tryLock(this.lockPath(name), `remove orphan ${id}`, `container "${name}"`) : undefined;
      if (named && !lock) continue; // its create is in progress
      try {
        if ((await recorded()).has(id)) continue; // its create finished meanwhile
        this.deps.logger.info('removing the files of a container that has no record', { id, ...(name ? { container: name } : {}) });
        await this.deps.runtime.delete(id, { force: true }).catch(() => {});
        await this.removeFiles(id);
        n++;
      } finally {
        await lock?.release({ remove: name ? await this.gone(name) : false });
      }
    }
    return n;
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
