import { Readable } from 'node:stream';
import { parentPort } from 'node:worker_threads';
import type { LogFields, Logger, LogLevel } from '../log.js';
import { applyLayer } from './apply.js';
import { fromWire, toWire, type FromThread, type ToThread } from './thread.js';

/**
 * The worker thread of thread.ts: applies one layer at a time, fed with the
 * blob's chunks by the main thread, and acknowledges each chunk when the
 * decompressor takes it (the main thread's flow control).
 */

const port = parentPort;
if (!port) throw new Error('apply-thread.js runs as a worker thread only');

interface Job {
  id: number;
  source: Readable;
  queue: Buffer[];
  ended: boolean;
  /** The decompressor asked for more and got nothing yet. */
  wanted: boolean;
  abort: AbortController;
}

let job: Job | undefined;

const post = (m: FromThread): void => port.postMessage(m);


function feed(j: Job): void {
  while (j.wanted && j.queue.length > 0) {
    const chunk = j.queue.shift()!;
    post({ type: 'ack', id: j.id, bytes: chunk.length });
    j.wanted = j.source.push(chunk);
  }
  if (j.wanted && j.ended && j.queue.length === 0) j.source.push(null);
}

function threadLogger(id: number, base: LogFields): Logger {
  const log = (level: LogLevel) => (msg: string, fields?: LogFields) => post({ type: 'log', id, level, msg, fields: { ...base, ...fields } });
  return { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error'), child: (fields) => threadLogger(id, { ...base, ...fields }) };
}

function start(m: Extract<ToThread, { type: 'start' }>): void {
  const j: Job = {
    id: m.id,
    source: new Readable({ read: () => ((j.wanted = true), feed(j)) }),
    queue: [],
    ended: false,
    wanted: false,
    abort: new AbortController(),
  };
  job = j;
  applyLayer(m.root, j.source, { compression: m.compression, ...(m.diffId ? { diffId: m.diffId } : {}), logger: threadLogger(m.id, {}), signal: j.abort.signal }).then(
    (result) => {
      if (job === j) job = undefined;
      post({ type: 'done', id: j.id, result });
    },
    (err: unknown) => {
      if (job === j) job = undefined;
      const error = toWire(err);
      try {
        post({ type: 'failed', id: j.id, error });
      } catch {
        // details that cannot be cloned: the code and the message still go
        post({ type: 'failed', id: j.id, error: { ...error, details: {} } });
      }
    },
  );
}

port.on('message', (m: ToThread) => {
  if (m.type === 'start') return start(m);
  const j = job;
  if (!j || j.id !== m.id) return; // a finished job's late messages
  switch (m.type) {
    case 'chunk':
      j.queue.push(Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength));
      return feed(j);
    case 'end':
      j.ended = true;
      return feed(j);
    case 'fail':
      j.source.destroy(fromWire(m.error));
      return;
    case 'abort':
      j.abort.abort(fromWire({ berth: true, code: 'CANCELLED', message: 'the layer apply was cancelled' }));
      return;
  }
});
