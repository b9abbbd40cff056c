import type { BerthEvent, EventBus } from '../events.js';
import type { Logger } from '../log.js';
import type { EventLog } from './store.js';

/**
 * Persists the events published on a bus into the event log, batched: the
 * events of `flushMs` (default 200 ms) go into one transaction, so a short
 * command that publishes four events pays one durable write, not four.
 * `flush` and `stop` write what is pending at once. A process killed
 * meanwhile loses at most that window of events: they are a record of what
 * happened, not the state itself (that is in the records). Progress events
 * are not kept: they are many, and only a live view wants them.
 */

const TRANSIENT: ReadonlySet<BerthEvent['type']> = new Set(['pull.layer.start', 'pull.layer.progress']);

export interface EventRecorder {
  /** Resolves when everything published so far is stored. */
  flush(): Promise<void>;
  /** Calls fn after each batch is stored (readers of the log, such as an event stream, read then); returns a function that stops. */
  onStored(fn: () => void): () => void;
  stop(): Promise<void>;
}

export function recordEvents(bus: EventBus, log: EventLog, logger: Logger, flushMs = 200): EventRecorder {
  let pending: BerthEvent[] = [];
  let timer: NodeJS.Timeout | undefined;
  let writing: Promise<void> = Promise.resolve();
  const listeners = new Set<() => void>();
  const write = (): void => {
    clearTimeout(timer);
    timer = undefined;
    if (pending.length === 0) return;
    const batch = pending;
    pending = [];
    writing = writing.then(() =>
      log.append(batch).then(
        () => {
          for (const fn of listeners) fn();
        },
        (err: Error) => logger.warn('events could not be stored', { count: batch.length, error: err.message }),
      ),
    );
  };
  const unsubscribe = bus.subscribe((event) => {
    if (TRANSIENT.has(event.type)) return;
    pending.push(event);
    timer ??= setTimeout(write, flushMs);
  });
  const flush = async (): Promise<void> => {
    write();
    await writing;
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
