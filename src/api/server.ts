import { chmod, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { asBerthError, BerthError, type ErrorCode } from '../errors.js';
import type { Logger } from '../log.js';
import type { StoredEvent } from '../metadata/store.js';

/**
 * The daemon's HTTP API on a unix socket under --state (mode 0600, in a
 * 0700 directory: only root talks to it):
 *   GET  /status              the status of every declared object (JSON)
 *   GET  /events?since=SEQ    server-sent events from the event log, resumable
 *                             (also by the Last-Event-ID header), then live
 *   GET  /metrics             Prometheus text format
 *   POST /reconcile           apply now; the body may name manifest paths
 *                             and options ({"paths": [...], "prune": true});
 *                             answers with the apply report
 * Errors are JSON {code, message, hint} with a status that matches the code.
 */

export interface ApiHandlers {
  status(): Promise<unknown>;
  /** Stored events after `since`, oldest first. */
  events(since: number): Promise<StoredEvent[]>;
  /** Calls fn when new events may be stored; returns a function that stops. */
  onEvents(fn: () => void): () => void;
  metrics(): Promise<string>;
  reconcile(request: ReconcileRequest): Promise<unknown>;
}

export interface ReconcileRequest {
  paths?: string[];
  prune?: boolean;
  dryRun?: boolean;
}

export interface ApiServer {
  close(): Promise<void>;
}

const MAX_BODY = 1 << 20;

const STATUS: Partial<Record<ErrorCode, number>> = {
  INVALID_ARGUMENT: 400,
  NOT_FOUND: 404,
  LOCKED: 409,
  FAILED_PRECONDITION: 409,
  UNAVAILABLE: 503,
  TIMEOUT: 504,
};

export async function startApiServer(socketPath: string, handlers: ApiHandlers, logger: Logger): Promise<ApiServer> {
  const streams = new Set<ServerResponse>();
  const server = createServer((req, res) => {
    void route(req, res).catch((err: unknown) => {
      const e = asBerthError(err);
      if (e.code === 'INTERNAL') logger.error('api request failed', { path: req.url, error: e.message });
      if (!res.headersSent) send(res, STATUS[e.code] ?? 500, { code: e.code, message: e.message, ...(e.hint ? { hint: e.hint } : {}) });
      else res.end();
    });
  });

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://berth');
    const key = `${req.method} ${url.pathname}`;
    switch (key) {
      case 'GET /status':
        return send(res, 200, await handlers.status());
      case 'GET /metrics':
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
        res.end(await handlers.metrics());
        return;
      case 'GET /events':
        return streamEvents(req, res, url);
      case 'POST /reconcile':
        return send(res, 200, await handlers.reconcile(await readJson(req)));
      default:
        throw new BerthError('NOT_FOUND', `no such endpoint: ${key}`, { hint: 'GET /status, GET /events, GET /metrics, POST /reconcile' });
    }
  }

  async function streamEvents(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const from = url.searchParams.get('since') ?? req.headers['last-event-id'] ?? '0';
    let seq = Number(from);
    if (!Number.isSafeInteger(seq) || seq < 0) throw new BerthError('INVALID_ARGUMENT', `since ${JSON.stringify(from)} is not a sequence number`);
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
    streams.add(res);
    let busy = false;
    let again = false;
    const pump = async (): Promise<void> => {
      if (busy) {
        again = true;
        return;
      }
      busy = true;
      try {
        do {
          again = false;
          for (const e of await handlers.events(seq)) {
            res.write(`id: ${e.seq}\nevent: ${e.event.type}\ndata: ${JSON.stringify(e)}\n\n`);
            seq = e.seq;
          }
        } while (again);
      } finally {
        busy = false;
      }
    };
    const stop = handlers.onEvents(() => void pump().catch(() => res.end()));
    // A comment line now and then keeps proxies and idle timeouts from closing the stream.
    const keepalive = setInterval(() => res.write(': keepalive\n\n'), 15_000);
    res.on('close', () => {
      stop();
      clearInterval(keepalive);
      streams.delete(res);
    });
    await pump();
  }

  await rm(socketPath, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  await chmod(socketPath, 0o600);
  return {
    async close() {
      for (const s of streams) s.end();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(socketPath, { force: true });
    },
  };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body) + '\n');
}

async function readJson(req: IncomingMessage): Promise<ReconcileRequest> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > MAX_BODY) throw new BerthError('INVALID_ARGUMENT', `request body larger than ${MAX_BODY} bytes`);
    chunks.push(c);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (!text) return {};
  try {
    return JSON.parse(text) as ReconcileRequest;
  } catch {
    throw new BerthError('INVALID_ARGUMENT', 'request body is not JSON');
  }
}
