/**
 * Typed domain events. Operations publish them; the CLI renders them (progress
 * bars, JSON lines), the daemon persists and serves them. Events carry no
 * credentials. Subscribers must be quick and must not throw: a throwing
 * subscriber is isolated so it cannot break the publisher.
 */

export type BerthEvent =
  | { type: 'pull.resolved'; ref: string; digest: string; mediaType: string; host: string }
  | { type: 'pull.layer.start'; ref: string; digest: string; size: number; offset: number }
  | { type: 'pull.layer.progress'; ref: string; digest: string; size: number; offset: number }
  | { type: 'pull.layer.done'; ref: string; digest: string; size: number; cached: boolean }
  | { type: 'pull.retry'; ref: string; host: string; attempt: number; delayMs: number; reason: string }
  | { type: 'pull.done'; ref: string; digest: string; bytes: number; durationMs: number }
  | { type: 'image.created'; name: string; digest: string }
  | { type: 'image.updated'; name: string; digest: string; previous: string }
  | { type: 'image.deleted'; name: string; digest: string }
  | { type: 'container.created'; name: string; id: string; image: string; digest: string }
  | { type: 'container.started'; name: string; id: string; pid: number; restartCount: number }
  | { type: 'container.exited'; name: string; id: string; exitCode: number; signal?: number; oomKilled: boolean; ranMs?: number }
  | { type: 'container.restart.scheduled'; name: string; id: string; attempt: number; delayMs: number; exitCode: number }
  | { type: 'container.restart.failed'; name: string; id: string; attempt: number; error: string }
  | { type: 'container.gave-up'; name: string; id: string; restartCount: number; reason: string }
  | { type: 'container.stopped'; name: string; id: string }
  | { type: 'container.adopted'; name: string; id: string; pid: number }
  | { type: 'container.removed'; name: string; id: string }
  | { type: 'container.replaced'; name: string; reason: string; diff: Array<{ path: string; from: unknown; to: unknown }> }
  | { type: 'reconcile.done'; converged: boolean; changes: number; failed: number; durationMs: number; trigger: string }
  | { type: 'gc.done'; blobs: number; snapshots: number; ingests: number; bytes: number; durationMs: number };

export type EventType = BerthEvent['type'];

export interface EventPublisher {
  publish(event: BerthEvent): void;
}

export interface EventBus extends EventPublisher {
  subscribe(listener: (event: BerthEvent) => void): () => void;
}

export class LocalEventBus implements EventBus {
  private readonly listeners = new Set<(event: BerthEvent) => void>();

  publish(event: BerthEvent): void {
    for (const l of this.listeners) {
      try {
        l(event);
      } catch {
        // A broken subscriber must not fail the operation that published.
      }
    }
  }

  subscribe(listener: (event: BerthEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

export const nullPublisher: EventPublisher = { publish() {} };
