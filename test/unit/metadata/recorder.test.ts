/**
 * The event recorder's group commit, against an event log whose writes the
 * test ends by hand: what goes into each write, and when flush resolves.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LocalEventBus, type BerthEvent } from '../../../src/events.js';
import { createLogger, type LogRecord } from '../../../src/log.js';
import { recordEvents } from '../../../src/metadata/recorder.js';
import type { EventLog, StoredEvent } from '../../../src/metadata/store.js';

/** An event log whose appends stay in flight until the test ends them. */
function heldLog() {
  const writes: Array<{ names: string[]; end: (err?: Error) => void }> = [];
  const log: EventLog = {
    append(events) {
      return new Promise<StoredEvent[]>((resolve, reject) => {
        writes.push({ names: events.map((e) => (e as { name?: string }).name ?? e.type), end: (err) => (err ? reject(err) : resolve([])) });
      });
    },
    since: async () => [],
    lastSeq: async () => 0,
  };
  return { log, writes };
}

const event = (name: string): BerthEvent => ({ type: 'container.started', name, id: name, pid: 1, restartCount: 0 }) as BerthEvent;
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Whether the promise has settled after a turn of the event loop. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let yes = false;
  void p.then(() => (yes = true), () => (yes = true));
  await turn();
  await turn();
  return yes;
}

describe('event recorder', () => {
  test("one turn's events go into one write at once, without waiting for a timer", async () => {
    const bus = new LocalEventBus();
    const { log, writes } = heldLog();
    recordEvents(bus, log, createLogger(() => {}, 'error'));
    bus.publish(event('a'));
    bus.publish(event('b'));
    assert.equal(writes.length, 0, 'not within the publishing turn');
    await turn();
    assert.deepEqual(writes.map((w) => w.names), [['a', 'b']]);
  });

  test('events published while a write is in flight wait for it and go together into the next', async () => {
    const bus = new LocalEventBus();
    const { log, writes } = heldLog();
    recordEvents(bus, log, createLogger(() => {}, 'error'));
    bus.publish(event('a'));
    await turn();
    for (const n of ['b', 'c', 'd']) {
      bus.publish(event(n));
      await turn();
    }
    assert.equal(writes.length, 1, 'no second write while the first is in flight');
    writes[0]!.end();
    await turn();
    assert.deepEqual(writes.map((w) => w.names), [['a'], ['b', 'c', 'd']]);
  });

  test('flush resolves once everything published before it is stored, not later events', async () => {
    const bus = new LocalEventBus();
    const { log, writes } = heldLog();
    const rec = recordEvents(bus, log, createLogger(() => {}, 'error'));
    assert.equal(await settled(rec.flush()), true, 'nothing published: at once');
    bus.publish(event('a'));
    const first = rec.flush();
    assert.deepEqual(writes.map((w) => w.names), [['a']], 'flush writes at once');
    bus.publish(event('b'));
    const second = rec.flush();
    assert.equal(await settled(first), false);
    writes[0]!.end();
    assert.equal(await settled(first), true, 'a is stored');
    assert.equal(await settled(second), false, 'b is not yet');
    bus.publish(event('c'));
    writes[1]!.end();
    assert.equal(await settled(second), true, 'b is stored; c, published after, is not waited for');
    assert.deepEqual(writes.map((w) => w.names), [['a'], ['b'], ['c']]);
  });

  test('a failed write is logged, its flush resolves, and later events are still stored', async () => {
    const bus = new LocalEventBus();
    const { log, writes } = heldLog();
    const logs: LogRecord[] = [];
    const rec = recordEvents(bus, log, createLogger((r) => logs.push(r), 'warn'));
    bus.publish(event('a'));
    const flushed = rec.flush();
    writes[0]!.end(new Error('disk full'));
    await flushed;
    assert.match(JSON.stringify(logs), /events could not be stored.*disk full/);
    bus.publish(event('b'));
    await turn();
    assert.deepEqual(writes.map((w) => w.names), [['a'], ['b']]);
  });

  test('progress events are not stored; stop stores the rest and then nothing more', async () => {
    const bus = new LocalEventBus();
    const { log, writes } = heldLog();
    const rec = recordEvents(bus, log, createLogger(() => {}, 'error'));
    bus.publish({ type: 'pull.layer.progress', ref: 'r', digest: 'sha256:00', bytes: 1, total: 2 } as unknown as BerthEvent);
    bus.publish(event('a'));
    const stopped = rec.stop();
    writes[0]!.end();
    await stopped;
    bus.publish(event('late'));
    await turn();
    assert.deepEqual(writes.map((w) => w.names), [['a']]);
  });
});
