import type { Readable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { BerthError } from '../errors.js';
import { nullLogger, type LogLevel } from '../log.js';
import type { ApplyOptions, ApplyResult } from './apply.js';

/**
 * applyLayer on a worker thread, with the same contract (options, result,
 * errors, the blob destroyed at the end).
 *
 * Why: pulling runs the download (HTTP, the blob's sha256, ingest writes)
 * on the main thread while the layers are applied. Applying on the same
 * thread put both in one queue: on 8 layers of 128 MiB the main thread
 * was busy for the sum of both, and spent 2.1 s in GC (0.17 s when
 * applying alone), marking the pull's larger heap again and again on the
 * external memory the inflated chunks churn through. On its own thread the
 * apply (inflate, diffID hash, tar, writes) runs beside the download, with
 * its own small heap.
 *
 * The blob is read here and its chunks are moved to the thread, their
 * memory transferred when a chunk owns all of it (fs streams' chunks do),
 * otherwise copied; so the stream must not reuse the buffers it emits.
 * At most WINDOW bytes are in flight: the blob is paused beyond that.
 * Logs come back to opts.logger; errors come back as BerthErrors with their
 * code, message, hint and details (not their cause).
 *
 * Threads are kept for the next layer, unreferenced while idle so they
 * never keep the process alive.
 */
export async function applyLayerOnThread(root: string, blob: Readable, opts: ApplyOptions): Promise<ApplyResult> {
  const logger = opts.logger ?? nullLogger;
  const { signal } = opts;
  if (signal?.aborted) {
    blob.destroy();
    throw new BerthError('CANCELLED', `applying a layer to ${root} was cancelled before it started`, { cause: signal.reason });
  }
  const worker = takeWorker();
  const id = ++jobs;
  let inFlight = 0;
  let settled = false;
  return new Promise<ApplyResult>((resolve, reject) => {
    const finish = (fn: () => void, reusable: boolean): void => {
      if (settled) return;
      settled = true;
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
      signal?.removeEventListener('abort', onAbort);
      blob.off('data', onData);
      blob.off('end', onEnd);
      blob.off('error', onBlobError);
      blob.on('error', () => {}); // a late error of a stream nobody reads any more
      blob.destroy();
      if (reusable) giveBack(worker);
      else void worker.terminate();
      fn();
    };
    const onMessage = (m: FromThread): void => {
      if (m.id !== id) return;
      switch (m.type) {
        case 'ack':
          inFlight -= m.bytes;
          if (inFlight <= WINDOW / 2 && blob.isPaused()) blob.resume();
          return;
        case 'log':
          logger[m.level](m.msg, m.fields);
          return;
        case 'done':
          return finish(() => resolve(m.result), true);
        case 'failed':
          return finish(() => reject(fromWire(m.error)), true);
      }
    };
    const died = (why: string, cause?: unknown): void =>
      finish(() => reject(new BerthError('INTERNAL', `applying a layer to ${root}: the apply thread ${why}`, { cause })), false);
    const onError = (err: Error): void => died(`failed: ${err.message}`, err);
    const onExit = (code: number): void => died(`exited with code ${code}`);
    const onAbort = (): void => worker.postMessage({ type: 'abort', id } satisfies ToThread);
    const onData = (chunk: Buffer): void => {
      inFlight += chunk.length;
      const owned = chunk.byteOffset === 0 && chunk.byteLength === chunk.buffer.byteLength && chunk.byteLength >= TRANSFER_MIN;
      const data = owned ? chunk : Buffer.from(chunk);
      worker.postMessage({ type: 'chunk', id, data } satisfies ToThread, [data.buffer as ArrayBuffer]);
      if (inFlight > WINDOW) blob.pause();
    };
    const onEnd = (): void => worker.postMessage({ type: 'end', id } satisfies ToThread);
    const onBlobError = (err: unknown): void => worker.postMessage({ type: 'fail', id, error: toWire(err) } satisfies ToThread);

    worker.on('message', onMessage);
    worker.once('error', onError);
    worker.once('exit', onExit);
    signal?.addEventListener('abort', onAbort, { once: true });
    worker.postMessage({ type: 'start', id, root, compression: opts.compression, ...(opts.diffId ? { diffId: opts.diffId } : {}) } satisfies ToThread);
    blob.on('data', onData);
    blob.once('end', onEnd);
    blob.once('error', onBlobError);
  });
}

/**
 * Bytes of blob posted to the thread and not yet taken by its decompressor.
 * 2 MiB: peak RSS of the 8 x 128 MiB pull 190 MB against 200 MB with 8 MiB,
 * no slower.
 */
const WINDOW = 2 << 20;
/** Smaller chunks are copied: a transfer costs more than the copy. */
const TRANSFER_MIN = 64 << 10;
/** Threads kept for later layers (concurrent unpacks may use more at once). */
const MAX_IDLE = 2;

let jobs = 0;
const idle: Worker[] = [];

function takeWorker(): Worker {
  const w = idle.pop() ?? new Worker(new URL('./apply-thread.js', import.meta.url));
  w.ref();
  return w;
}

function giveBack(w: Worker): void {
  if (idle.length >= MAX_IDLE) {
    void w.terminate();
    return;
  }
  w.unref();
  idle.push(w);
}

// ---- the protocol between this module and apply-thread.ts ----

export interface WireError {
  berth: boolean;
  code: string | undefined;
  message: string;
  hint?: string | undefined;
  details?: Record<string, unknown>;
}

export type ToThread =
  | { type: 'start'; id: number; root: string; compression: ApplyOptions['compression']; diffId?: ApplyOptions['diffId'] }
  | { type: 'chunk'; id: number; data: Buffer }
  | { type: 'end'; id: number }
  | { type: 'fail'; id: number; error: WireError }
  | { type: 'abort'; id: number };

export type FromThread =
  | { type: 'ack'; id: number; bytes: number }
  | { type: 'log'; id: number; level: LogLevel; msg: string; fields: Record<string, unknown> | undefined }
  | { type: 'done'; id: number; result: ApplyResult }
  | { type: 'failed'; id: number; error: WireError };

export function toWire(err: unknown): WireError {
  if (err instanceof BerthError) return { berth: true, code: err.code, message: err.message, hint: err.hint, details: err.details };
  const code = (err as { code?: unknown } | undefined)?.code;
  return { berth: false, code: typeof code === 'string' ? code : undefined, message: err instanceof Error ? err.message : String(err) };
}

export function fromWire(w: WireError): Error {
  if (w.berth) return new BerthError(w.code as BerthError['code'], w.message, { hint: w.hint, details: w.details ?? {} });
  return Object.assign(new Error(w.message), w.code === undefined ? {} : { code: w.code });
}
