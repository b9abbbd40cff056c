import { isTransientCode, type ErrorCode } from '../errors.js';
import type { EventPublisher } from '../events.js';
import type { Logger } from '../log.js';
import type { DesiredState } from '../manifests/index.js';
import { apply, type ApplyReport, type ReconcileDeps } from './apply.js';
import { isImageChange } from './plan.js';

/**
 * The daemon's control loop: a de-duplicating queue of reconcile requests
 * (a manifest change, the periodic resync, an API call), one run at a time,
 * and per-key exponential backoff for steps that failed for reasons that
 * may clear (registry down, network): those keys get another run after
 * their delay. `retryable` is the one place that decides retry versus
 * terminal; a terminal failure (an invalid spec, a conflict) waits for the
 * next manifest change or resync.
 */

export interface Desired {
  desired: DesiredState;
  /** Prune settings sparing what failed to load (cli/reconcile.ts protection()). */
  protect: { prune: boolean; keep: ReadonlySet<string>; badFiles: ReadonlySet<string> };
  manifestErrors: number;
}

export interface ControllerDeps {
  reconcile: ReconcileDeps;
  load: () => Promise<Desired>;
  events: EventPublisher;
  logger: Logger;
  /** A full run this often, catching what a watch missed (default 30 s). */
  resyncMs?: number;
  /** Requests within this window are one run (default 100 ms). */
  debounceMs?: number;
  onReport?: (report: ApplyReport, desired: Desired, durationMs: number) => void;
}

export const BACKOFF = { initialMs: 1000, maxMs: 5 * 60 * 1000 };

/** Transient failures are retried with backoff; everything else waits for a change. */
export function retryable(code: ErrorCode): boolean {
  return isTransientCode(code) || code === 'LOCKED';
}

export class Controller {
  private queued: string[] = [];
  private timer: NodeJS.Timeout | undefined;
  private resync: NodeJS.Timeout | undefined;
  private running: Promise<unknown> = Promise.resolve();
  private readonly backoff = new Map<string, { delayMs: number; at: number }>();
  private retryTimer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly deps: ControllerDeps) {}

  start(): void {
    this.trigger('start');
    const every = this.deps.resyncMs ?? 30_000;
    this.resync = setInterval(() => this.trigger('resync'), every);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.retryTimer);
    clearInterval(this.resync);
    await this.running.catch(() => {});
  }

  /** Asks for a run; requests arriving together (or during a run) become one run. */
  trigger(reason: string): void {
    if (this.stopped) return;
    this.queued.push(reason);
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const reasons = [...new Set(this.queued)];
      this.queued = [];
      void this.run(reasons.join(','), this.deps.load);
    }, this.deps.debounceMs ?? 100);
  }

  /** A run with its own desired state (POST /reconcile with paths), in turn with the loop's runs. */
  runWith(reason: string, load: () => Promise<Desired>): Promise<{ report: ApplyReport; desired: Desired }> {
    return this.run(reason, load);
  }

  private run(reason: string, load: () => Promise<Desired>): Promise<{ report: ApplyReport; desired: Desired }> {
    const next = this.running.catch(() => {}).then(async () => {
      const started = Date.now();
      const desired = await load();
      const report = await apply(this.deps.reconcile, desired.desired, desired.protect);
      const durationMs = Date.now() - started;
      const failed = report.steps.filter((s) => !s.ok);
      this.deps.events.publish({ type: 'reconcile.done', converged: report.converged, changes: report.steps.length, failed: failed.length, durationMs, trigger: reason });
      this.deps.logger.info('reconciled', { trigger: reason, converged: report.converged, changes: report.steps.length, failed: failed.length, durationMs });
      this.scheduleRetries(report);
      this.deps.onReport?.(report, desired, durationMs);
      return { report, desired };
    });
    this.running = next;
    return next;
  }

  private scheduleRetries(report: ApplyReport): void {
    const now = Date.now();
    const failing = new Set<string>();
    for (const s of report.steps) {
      if (s.ok || !s.error) continue;
      const key = isImageChange(s.change) ? `image:${s.change.image}` : `container:${s.change.name}`;
      if (!retryable(s.error.code)) {
        this.deps.logger.warn('not retrying until the manifests change', { key, code: s.error.code, error: s.error.message });
        continue;
      }
      failing.add(key);
      const prev = this.backoff.get(key);
      const delayMs = prev ? Math.min(BACKOFF.maxMs, prev.delayMs * 2) : BACKOFF.initialMs;
      this.backoff.set(key, { delayMs, at: now + delayMs });
    }
    // Keys that succeeded (or no longer fail) start from the first delay next time.
    for (const key of [...this.backoff.keys()]) if (!failing.has(key)) this.backoff.delete(key);
    clearTimeout(this.retryTimer);
    if (this.backoff.size === 0 || this.stopped) return;
    const soonest = Math.min(...[...this.backoff.values()].map((b) => b.at));
    this.retryTimer = setTimeout(() => this.trigger('retry'), Math.max(0, soonest - Date.now()));
  }
}
