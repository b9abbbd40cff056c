import type { EventPublisher } from '../events.js';
import type { Logger } from '../log.js';
import type { MetadataStore } from '../metadata/store.js';
import type { ContainerRuntime } from '../runtime/runtime.js';
import { decideRestart } from './restart.js';
import type { ContainerService } from './service.js';

/**
 * Keeps containers running by their restart policies, driven by exit
 * events (the runtime's exit watch), not by polling. On start it adopts
 * what is already there: running containers are left running (never
 * stopped or started twice); exits that happened while no supervisor ran
 * are processed; restarts that were due are scheduled again.
 *
 * Several supervisors (two daemons) must not run on one state directory;
 * the daemon's writer lock ensures that. `berth stop` and `berth rm` from
 * other processes are safe meanwhile: they set `desired` first and hold
 * the container's lock.
 */

export interface SupervisorDeps {
  service: ContainerService;
  runtime: ContainerRuntime;
  metadata: MetadataStore;
  events: EventPublisher;
  logger: Logger;
  now?: () => Date;
  random?: () => number;
}

export class Supervisor {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  /** One exit or restart at a time per container in this process; the container lock covers other processes. */
  private readonly busy = new Map<string, Promise<void>>();
  private stopWatch: (() => void) | undefined;
  private stopped = false;
  private readonly now: () => Date;

  constructor(private readonly deps: SupervisorDeps) {
    this.now = deps.now ?? (() => new Date());
  }

  /** Adopts existing containers and starts watching exits. */
  async start(): Promise<void> {
    const byId = async (id: string): Promise<string | undefined> => (await this.deps.metadata.containers.list()).find((r) => r.id === id)?.name;
    this.stopWatch = this.deps.runtime.watchExits((id) => {
      void byId(id).then((name) => {
        if (name) void this.serial(name, () => this.onExit(name));
      });
    });
    await this.deps.service.removeOrphans().catch((err: Error) => this.deps.logger.warn('removing orphaned containers failed', { error: err.message }));
    for (const rec of await this.deps.metadata.containers.list()) await this.serial(rec.name, () => this.adopt(rec.name));
  }

  /** Cancels pending restarts and stops watching. Containers keep running. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.stopWatch?.();
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    await Promise.allSettled([...this.busy.values()]);
  }

  private serial(name: string, fn: () => Promise<void>): Promise<void> {
    const next = (this.busy.get(name) ?? Promise.resolve()).then(fn).catch((err: Error) => {
      this.deps.logger.error('supervising container failed', { container: name, error: err.message });
    });
    this.busy.set(name, next);
    void next.finally(() => this.busy.get(name) === next && this.busy.delete(name));
    return next;
  }

  private async adopt(name: string): Promise<void> {
    const rec = await this.deps.metadata.containers.get(name);
    if (!rec) return;
    const st = await this.deps.runtime.state(rec.id);
    if (st?.status === 'running' && !(await this.deps.runtime.exitStatus(rec.id))) {
      this.deps.logger.info('adopted a running container', { container: name, pid: st.pid });
      this.deps.events.publish({ type: 'container.adopted', name, id: rec.id, pid: st.pid });
      return;
    }
    if (st) return this.onExit(name);
    // Gone with a reboot: an auto-remove container is removed, not restarted.
    if (await this.deps.service.removeIfAutoRemoved(name)) return;
    if (rec.desired !== 'running') return;
    if (rec.status.nextRestartAt) return this.schedule(name, Math.max(0, Date.parse(rec.status.nextRestartAt) - this.now().getTime()));
    if (rec.status.startedAt && !rec.status.finishedAt) {
      // Running when the runtime state vanished: the host rebooted (--state is a tmpfs). Treat it as a crash.
      await this.deps.metadata.containers.update(name, (r) => ({ ...r, status: { ...r.status, finishedAt: this.now().toISOString(), lastError: 'the container was gone after a reboot' } }));
      return this.decide(name, 255);
    }
  }

  private async onExit(name: string): Promise<void> {
    if (this.stopped || (await this.deps.service.removeIfAutoRemoved(name))) return;
    const exit = await this.deps.service.processExit(name);
    if (!exit) return;
    await this.decide(name, exit.code);
  }

  private async decide(name: string, exitCode: number): Promise<void> {
    const rec = await this.deps.metadata.containers.get(name);
    if (!rec || rec.desired !== 'running') return;
    const d = decideRestart(rec.restart, rec.status, exitCode, this.now(), this.deps.random);
    if (!d.restart) {
      await this.deps.service.settle(name);
      if (d.gaveUp) this.deps.events.publish({ type: 'container.gave-up', name, id: rec.id, restartCount: rec.status.restartCount, reason: d.reason });
      return;
    }
    // A stop between the exit and here (it need not wait for this) wins: no restart is due.
    if (!(await this.deps.service.scheduleRestart(name, new Date(this.now().getTime() + d.delayMs), d.backoffMs))) return;
    this.deps.events.publish({ type: 'container.restart.scheduled', name, id: rec.id, attempt: d.attempt, delayMs: d.delayMs, exitCode });
    this.schedule(name, d.delayMs);
  }

  private schedule(name: string, delayMs: number): void {
    if (this.stopped) return;
    clearTimeout(this.timers.get(name));
    this.timers.set(
      name,
      setTimeout(() => {
        this.timers.delete(name);
        void this.serial(name, () => this.restart(name));
      }, delayMs),
    );
  }

  private async restart(name: string): Promise<void> {
    if (this.stopped) return;
    try {
      await this.deps.service.restart(name);
    } catch (err) {
      const rec = await this.deps.metadata.containers.get(name);
      if (!rec) return;
      const message = err instanceof Error ? err.message : String(err);
      this.deps.events.publish({ type: 'container.restart.failed', name, id: rec.id, attempt: rec.status.restartCount + 1, error: message });
      // A start that fails counts as a failed run: back off and try again.
      await this.decide(name, 1);
    }
  }
}
