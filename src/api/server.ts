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
 *   POST /cli                 run one container command line in the daemon
 *                             (see CliRequest): the request body is NDJSON,
 *                             its first line the command, later lines
 *                             {"signal": N} to pass on while it runs; the
 *                             answer is NDJSON frames {"stdout": "..."},
 *                             {"stderr": "..."}, last {"exit": N}; a signal
 *                             the command does not handle is answered with
 *                             {"signal": N} (the client dies of it, as it
 *                             would have locally) and ends the session as if
 *                             the client had gone. A line the
 *                             daemon does not run is answered 409 before any
 *                             frame (the client runs it itself). A client that
 *                             disconnects before the exit frame counts as gone.
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
  /** Runs a command line (POST /cli); its exit code, or why this daemon does not run it. */
  cli?(request: CliRequest, session: CliSession): Promise<number | { refused: string }>;
}

export interface CliRequest {
  argv: string[];
  /** The client's environment, reduced to what berth reads. */
  env: Record<string, string>;
  /** The client's working directory: relative paths on the line mean this. */
  cwd: string;
  /** Whether the client's stdout and stderr are terminals. */
  tty?: { stdout?: boolean; stderr?: boolean };
}

export interface CliSession {
  stdout(text: string): void;
  stderr(text: string): void;
  /** Calls fn with each signal number the client passes on; returns a function that stops. */
  onSignal(fn: (signal: number) => void): () => void;
  /** Aborted when the client disconnected before the exit frame, or the server closes. */
  gone: AbortSignal;
  /** The line is run, not refused: answers 200 now, so the client knows it is served before any output (a quiet `run` may print nothing for long). */
  accepted(): void;
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
  const sessions = new Set<AbortController>();
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
        return send(res, 200, await handlers.reconcile((await readJson(req)) as ReconcileRequest));
      case 'POST /cli':
        if (handlers.cli) return serveCli(req, res, handlers.cli);
        throw new BerthError('NOT_FOUND', 'this daemon runs no command lines');
      default:
        throw new BerthError('NOT_FOUND', `no such endpoint: ${key}`, { hint: 'GET /status, GET /events, GET /metrics, POST /reconcile, POST /cli' });
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

  async function serveCli(req: IncomingMessage, res: ServerResponse, run: NonNullable<ApiHandlers['cli']>): Promise<void> {
    const lines = ndjsonLines(req);
    const first = await lines.next();
    if (first.done) throw new BerthError('INVALID_ARGUMENT', 'POST /cli: the body has no command line');
    const request = cliRequest(first.value);
    const gone = new AbortController();
    sessions.add(gone);
    const listeners = new Set<(signal: number) => void>();
    let ended = false;
    res.on('close', () => {
      if (!ended) gone.abort();
    });
    const answer = (): void => {
      if (res.headersSent) return;
      res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
      res.flushHeaders();
    };
    const frame = (f: Record<string, unknown>): void => {
      answer();
      if (!res.destroyed && !res.writableEnded) res.write(JSON.stringify(f) + '\n');
    };
    // Later lines: signals, until the client ends its body or goes.
    void (async () => {
      for await (const line of { [Symbol.asyncIterator]: () => lines }) {
        const signal = (line as { signal?: unknown }).signal;
        if (!Number.isSafeInteger(signal) || (signal as number) <= 0) continue;
        if (listeners.size) for (const fn of listeners) fn(signal as number);
        else {
          frame({ signal });
          res.end();
          gone.abort();
        }
      }
    })().catch(() => {});
    try {
      const result = await run(request, {
        stdout: (text) => frame({ stdout: text }),
        stderr: (text) => frame({ stderr: text }),
        onSignal(fn) {
          listeners.add(fn);
          return () => listeners.delete(fn);
        },
        gone: gone.signal,
        accepted: answer,
      });
      if (typeof result !== 'number' && !res.headersSent) return send(res, 409, { code: 'FAILED_PRECONDITION', message: result.refused });
      if (typeof result !== 'number') frame({ stderr: `berth: error: ${result.refused}\n` });
      frame({ exit: typeof result === 'number' ? result : 1 });
      ended = true;
      res.end();
    } finally {
      ended = true;
      sessions.delete(gone);
    }
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
      // Running command lines end as if their client had gone (a foreground run stops its container); the close waits for them.
      for (const g of sessions) g.abort();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(socketPath, { force: true });
    },
  };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body) + '\n');
}

/** The JSON values of a request body's lines, as they arrive (at most MAX_BODY bytes a line). */
async function* ndjsonLines(req: IncomingMessage): AsyncGenerator<unknown, void, undefined> {
  let buf = '';
  for await (const c of req as AsyncIterable<Buffer>) {
    buf += c.toString('utf8');
    for (let i = buf.indexOf('\n'); i !== -1; i = buf.indexOf('\n')) {
      const text = buf.slice(0, i).trim();
      buf = buf.slice(i + 1);
      if (text) yield parseJson(text);
    }
    if (buf.length > MAX_BODY) throw new BerthError('INVALID_ARGUMENT', `request line longer than ${MAX_BODY} bytes`);
  }
  if (buf.trim()) yield parseJson(buf.trim());
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new BerthError('INVALID_ARGUMENT', 'request body is not JSON');
  }
}

function cliRequest(v: unknown): CliRequest {
  const r = v as Partial<CliRequest> | null;
  const strings = (x: unknown): x is string[] => Array.isArray(x) && x.every((a) => typeof a === 'string');
  if (!r || typeof r !== 'object' || !strings(r.argv) || typeof r.cwd !== 'string' || !r.cwd.startsWith('/') || typeof r.env !== 'object' || r.env === null || !strings(Object.values(r.env))) {
    throw new BerthError('INVALID_ARGUMENT', 'POST /cli: expected {"argv": [strings], "env": {string: string}, "cwd": "/absolute/dir"}');
  }
  return { argv: r.argv, env: r.env, cwd: r.cwd, ...(r.tty ? { tty: { stdout: r.tty.stdout === true, stderr: r.tty.stderr === true } } : {}) };
}

async function readJson(req: IncomingMessage): Promise<unknown> {
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
