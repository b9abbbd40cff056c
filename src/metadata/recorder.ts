import type { BerthEvent, EventBus } from '../events.js';
import type { Logger } from '../log.js';
import type { EventLog } from './store.js';

/**
 * Persists the events published on a bus into the event log, batched: the
 * events of one tick go into one transaction. Progress events are not kept:
 * they are many, and only a live view wants them.
 */

const TRANSIENT: ReadonlySet<BerthEvent['type']> = new Set(['pull.layer.start', 'pull.layer.progress']);

export interface EventRecorder {
  /** Resolves when everything published so far is stored. */
  flush(): Promise<void>;
  stop(): Promise<void>;
}

export function recordEvents(bus: EventBus, log: EventLog, logger: Logger): EventRecorder {
  let pending: BerthEvent[] = [];
  let writing: Promise<void> = Promise.resolve();
  const write = (): void => {
    const batch = pending;
    pending = [];
    writing = writing.then(() =>
      log.append(batch).then(
        () => {},
        (err: Error) => logger.warn('events could not be stored', { count: batch.length, error: err.message }),
      ),
    );
  };
  const unsubscribe = bus.subscribe((event) => {
    if (TRANSIENT.has(event.type)) return;
    if (pending.length === 0) queueMicrotask(write);
    pending.push(event);
  });
  const flush = async (): Promise<void> => {
    if (pending.length) write();
    await writing;
  };
  return {
    flush,
    async stop() {
      unsubscribe();
      await flush();
    },
  };
}
