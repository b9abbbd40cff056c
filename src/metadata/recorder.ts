import type { BerthEvent, EventBus } from '../events.js';
import type { Logger } from '../log.js';
import type { EventLog } from './store.js';

/**
 * Persists the events published on a bus into the event log, by group
 * commit: the events of one turn of the event loop go into one
 * transaction at once, and those published while a transaction is being
 * written wait for it and then go together into the next. So an idle
 * process stores an event about a millisecond after it happened (a
 * `berth events -f` reader sees it then), and a busy one (a reconcile of a
 * hundred containers) pays one durable write per write time, not one per
 * event. `flush` and `stop` resolve once everything published before them
 * is stored. A process killed meanwhile loses at most the events not yet
 * written: they are a record of what happened, not the state itself (that
 * is in the records). Progress events are not kept: they are many, and only
 * a live view wants them.
 */

const TRANSIENT: ReadonlySet<BerthEvent['type']> = new Set(['pull.layer.start', 'pull.layer.progress']);

export interface EventRecorder {
  /** Resolves when everything published so far is stored (or its write failed, which is logged). */
  flush(): Promise<void>;
  /** Calls fn after each batch is stored (readers of the log, such as an event stream, read then); returns a function that stops. */
  onStored(fn: () => void): () => void;
  stop(): Promise<void>;
}

export function recordEvents(bus: EventBus, log: EventLog, logger: Logger): EventRecorder {
  let pending: BerthEvent[] = [];
  /** Events taken so far, and those whose write has ended. */
  let taken = 0;
  let done = 0;
  let writing = false;
  let scheduled = false;
  const waiters: Array<{ upTo: number; resolve: () => void }> = [];
  const listeners = new Set<() => void>();
  const write = (): void => {
    scheduled = false;
    // A write in flight takes what came meanwhile when it ends.
    if (writing || pending.length === 0) return;
    const batch = pending;
    pending = [];
    writing = true;
    void log
      .append(batch)
      .then(
        () => {
          for (const fn of listeners) fn();
        },
        (err: Error) => logger.warn('events could not be stored', { count: batch.length, error: err.message }),
      )
      .finally(() => {
        writing = false;
        done += batch.length;
        for (let i = waiters.length - 1; i >= 0; i--) {
          if (waiters[i]!.upTo <= done) waiters.splice(i, 1)[0]!.resolve();
        }
        write();
      });
  };
  const unsubscribe = bus.subscribe((event) => {
    if (TRANSIENT.has(event.type)) return;
    pending.push(event);
    taken++;
    if (!scheduled && !writing) {
      scheduled = true;
      setImmediate(write);
    }
  });
  const flush = (): Promise<void> => {
    const upTo = taken;
    if (done >= upTo) return Promise.resolve();
    write();
    return new Promise((resolve) => waiters.push({ upTo, resolve }));
  };
  return {
    flush,
    onStored(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
    async stop() {
      unsubscribe();
      await flush();
    },
  };
}
