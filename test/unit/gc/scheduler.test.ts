/**
 * GcScheduler: a burst of events that may leave garbage makes one
 * collection, delayMs after its first event; collections never overlap;
 * other events make none; stop() waits for the one running and starts no
 * more.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger, type LogRecord } from '../../../src/log.js';
import { GcScheduler } from '../../../src/gc/index.js';

function harness(collectMs: number, fail = false) {
  const logs: LogRecord[] = [];
  let running = 0;
  let most = 0;
  let runs = 0;
  const gc = new GcScheduler(
    async () => {
      runs++;
      running++;
      most = Math.max(most, running);
      await sleep(collectMs);
      running--;
      if (fail) throw new Error('disk on fire');
    },
    20,
    createLogger((r) => logs.push(r), 'debug'),
  );
  return { gc, logs, runs: () => runs, most: () => most };
}

const removed = { type: 'container.removed', name: 'a', id: 'x' } as const;

describe('GcScheduler', () => {
  it('makes one collection of a burst, delayMs after its first event, and none for other events', async () => {
    const h = harness(1);
    h.gc.observe({ type: 'container.started', name: 'a', id: 'x', pid: 1, restartCount: 0 });
    await sleep(60);
    assert.equal(h.runs(), 0, 'a start leaves no garbage');
    for (let i = 0; i < 5; i++) h.gc.observe(removed);
    h.gc.observe({ type: 'image.deleted', name: 'n', digest: 'd' });
    assert.equal(h.runs(), 0, 'not at once');
    await sleep(80);
    assert.equal(h.runs(), 1);
    await h.gc.stop();
  });

  it('never runs two collections at once: a burst during a long one queues the next', async () => {
    const h = harness(150);
    h.gc.observe(removed);
    await sleep(40); // the first is running
    h.gc.observe({ type: 'image.updated', name: 'n', digest: 'd2', previous: 'd1' });
    await sleep(40); // its timer fired while the first still runs
    h.gc.observe(removed);
    await sleep(600);
    assert.equal(h.runs(), 3);
    assert.equal(h.most(), 1, 'one at a time');
    await h.gc.stop();
  });

  it('logs a failed collection and keeps scheduling; stop waits for the running one and starts no more', async () => {
    const h = harness(80, true);
    h.gc.observe(removed);
    await sleep(40);
    h.gc.observe(removed); // its timer is pending when stop comes
    const t = Date.now();
    await h.gc.stop();
    assert.ok(Date.now() - t >= 30, 'stop waited for the collection in progress');
    await sleep(60);
    assert.equal(h.runs(), 1, 'nothing after stop');
    assert.ok(h.logs.some((l) => l.level === 'error' && l.msg === 'garbage collection failed' && l.fields.error === 'disk on fire'));
    h.gc.observe(removed);
    await sleep(60);
    assert.equal(h.runs(), 1);
  });
});
