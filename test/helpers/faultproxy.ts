/**
 * A registry front for fault-injection tests: a node:http server on 127.0.0.1
 * that streams every request to an upstream host:port and every response
 * back (no whole-body buffering), unless a programmed fault says otherwise.
 *
 * Fault selection: each request takes the FIRST fault, in the order added,
 * whose `path` (tested against the request target, path and query) and
 * `method` match and that has `times` left (default 1); that one use is
 * consumed. So `status 503` then `cut` for the same path means: first request
 * 503, second one cut, third one clean. `corrupt` and `cut` never match HEAD
 * (no body to damage).
 *
 * The client's Host header is passed upstream unchanged, so the registry's
 * absolute Location URLs (blob uploads) already name the proxy; any Location
 * that still names the upstream is rewritten to the proxy.
 *
 * A second listener on 127.0.0.2 ("the other host") is the target of
 * `redirect` faults: it forwards to the same upstream without faults and
 * records each request with its headers, so tests can check what a client
 * sends after a cross-host redirect (e.g. no Authorization).
 */
import { Agent, createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { pipeline, Transform, type TransformCallback } from 'node:stream';

interface FaultBase {
  path?: RegExp;
  times?: number;
  /** only requests with this method (e.g. 'GET'); any method when absent */
  method?: string;
}
export type Fault =
  /** flip one byte of the response body: at `atByte`, default the middle (byte 0 when the length is unknown) */
  | (FaultBase & { kind: 'corrupt'; atByte?: number })
  /** send the headers (with the real Content-Length) and `afterBytes` of body, then close the connection */
  | (FaultBase & { kind: 'cut'; afterBytes: number })
  /** answer with this status (and Retry-After seconds, if given) instead of forwarding */
  | (FaultBase & { kind: 'status'; status: number; retryAfter?: number })
  /** answer 307 to the same path on the other host (127.0.0.2) */
  | (FaultBase & { kind: 'redirect' })
  /** strip Range (and If-Range) from the request, so the upstream answers 200 with the full body */
  | (FaultBase & { kind: 'ignoreRange' })
  /** wait `ms` before forwarding */
  | (FaultBase & { kind: 'delay'; ms: number })
  /** forward the response body at about `bytesPerSecond` (so a client can be killed mid-transfer) */
  | (FaultBase & { kind: 'throttle'; bytesPerSecond: number });

export interface RecordedRequest {
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  /** the status the proxy answered with (set once the response head is sent) */
  status?: number;
  /** the kind of fault applied to this request, if any */
  fault?: Fault['kind'];
}

export interface FaultProxy {
  host: string;
  url: string;
  /** a second listener on 127.0.0.2 (a different host for the client) that serves redirected requests by forwarding them upstream; records every request it got, with its headers */
  otherHost: string;
  otherRequests: Array<{ method: string; path: string; headers: Record<string, string | string[] | undefined> }>;
  requests: RecordedRequest[];
  /** The most blob GETs that were in flight at once (request received, response not yet finished) since `clearFaults`. */
  peakBlobGets(): number;
  addFault(f: Fault): void;
  clearFaults(): void;
  stop(): Promise<void>;
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade', 'transfer-encoding']);

function listen(server: Server, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => {
      const addr = server.address();
      if (addr && typeof addr === 'object') resolve(addr.port);
      else reject(new Error(`no address for listener on ${host}`));
    });
  });
}

function flipByte(at: number): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      if (at >= seen && at < seen + chunk.length) {
        chunk = Buffer.from(chunk);
        chunk[at - seen] = (chunk[at - seen] ?? 0) ^ 0xff;
      }
      seen += chunk.length;
      cb(null, chunk);
    },
  });
}

/**
 * `redirectUpstream`: where the other host forwards to (default: `upstream`).
 * Point it at an unauthenticated registry holding the same blobs to model
 * blob storage behind signed URLs, which needs no Authorization.
 */
export async function startFaultProxy(upstream: string, opts: { redirectUpstream?: string } = {}): Promise<FaultProxy> {
  const upstreamUrl = new URL(`http://${upstream.replace(/^https?:\/\//, '')}`);
  const redirectUrl = new URL(`http://${(opts.redirectUpstream ?? upstream).replace(/^https?:\/\//, '')}`);
  const agent = new Agent({ keepAlive: true });
  const faults: Array<{ fault: Fault; remaining: number }> = [];
  const requests: RecordedRequest[] = [];
  let blobGets = 0;
  let peak = 0;
  const otherRequests: FaultProxy['otherRequests'] = [];
  let host = '';
  let otherHost = '';

  const take = (req: IncomingMessage): Fault | undefined => {
    const target = req.url ?? '/';
    for (const f of faults) {
      if (f.remaining <= 0) continue;
      const { fault } = f;
      if (fault.method && fault.method.toUpperCase() !== req.method) continue;
      if ((fault.kind === 'corrupt' || fault.kind === 'cut') && req.method === 'HEAD') continue;
      if (fault.path) {
        fault.path.lastIndex = 0;
        if (!fault.path.test(target)) continue;
      }
      f.remaining--;
      return fault;
    }
    return undefined;
  };

  /** Response headers as received, minus hop-by-hop ones, with Location pointing at `self` instead of the upstream. */
  const responseHeaders = (upRes: IncomingMessage, self: string): Array<[string, string]> => {
    const out: Array<[string, string]> = [];
    const raw = upRes.rawHeaders;
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = raw[i] as string;
      let value = raw[i + 1] as string;
      if (HOP_BY_HOP.has(name.toLowerCase())) continue;
      if (name.toLowerCase() === 'location') {
        for (const origin of [`http://${upstreamUrl.host}`, `http://localhost:${upstreamUrl.port}`]) {
          if (value.startsWith(origin)) value = `http://${self}${value.slice(origin.length)}`;
        }
      }
      out.push([name, value]);
    }
    return out;
  };

  /** Streams one request upstream and its response back, damaging the body for corrupt/cut. Resolves with the status sent. */
  const forward = (req: IncomingMessage, res: ServerResponse, self: string, fault?: Fault, target: URL = upstreamUrl): Promise<number> =>
    new Promise((resolve) => {
      const headers: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && (!HOP_BY_HOP.has(k) || k === 'transfer-encoding')) headers[k] = v;
      const upReq = httpRequest({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers, agent });
      upReq.on('error', (err) => {
        if (!res.headersSent) {
          res.writeHead(502, { 'content-type': 'text/plain' }).end(`fault proxy: upstream ${upstream} failed: ${err.message}`);
          resolve(502);
        } else {
          res.destroy();
        }
      });
      upReq.on('response', (upRes) => {
        const status = upRes.statusCode ?? 502;
        const outHeaders = responseHeaders(upRes, self);
        if (fault?.kind === 'cut') {
          cutResponse(res.socket as Socket, upRes, outHeaders, fault.afterBytes);
          resolve(status);
          return;
        }
        res.writeHead(status, upRes.statusMessage, outHeaders.flat());
        resolve(status);
        if (fault?.kind === 'corrupt') {
          const length = Number(upRes.headers['content-length']);
          const known = Number.isFinite(length) && length > 0;
          const at = known ? Math.min(fault.atByte ?? Math.floor(length / 2), length - 1) : fault.atByte ?? 0;
          pipeline(upRes, flipByte(at), res, () => {});
        } else if (fault?.kind === 'throttle') {
          pipeline(upRes, throttle(fault.bytesPerSecond), res, () => {});
        } else {
          pipeline(upRes, res, () => {});
        }
      });
      pipeline(req, upReq, () => {});
    });

  // The proxy writes the response itself, so it can stop mid-body with the real Content-Length already promised.
  const cutResponse = (socket: Socket, upRes: IncomingMessage, headers: Array<[string, string]>, afterBytes: number): void => {
    const chunked = upRes.headers['content-length'] === undefined;
    let head = `HTTP/1.1 ${upRes.statusCode} ${upRes.statusMessage ?? ''}\r\n`;
    for (const [k, v] of headers) head += `${k}: ${v}\r\n`;
    if (chunked) head += 'Transfer-Encoding: chunked\r\n';
    socket.write(head + '\r\n');
    let sent = 0;
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      upRes.destroy();
      socket.end(() => socket.destroy());
    };
    upRes.on('data', (chunk: Buffer) => {
      const part = chunk.subarray(0, Math.max(0, afterBytes - sent));
      if (part.length > 0) socket.write(chunked ? Buffer.concat([Buffer.from(`${part.length.toString(16)}\r\n`), part, Buffer.from('\r\n')]) : part);
      sent += part.length;
      if (sent >= afterBytes) finish();
    });
    upRes.on('end', finish);
    upRes.on('error', finish);
    if (afterBytes <= 0) finish();
  };

  const main = createServer((req, res) => {
    const record: RecordedRequest = { method: req.method ?? 'GET', path: req.url ?? '/', headers: { ...req.headers } };
    requests.push(record);
    if (record.method === 'GET' && record.path.includes('/blobs/')) {
      peak = Math.max(peak, ++blobGets);
      res.once('close', () => blobGets--);
    }
    const fault = take(req);
    if (fault) record.fault = fault.kind;
    void (async () => {
      switch (fault?.kind) {
        case 'status': {
          req.resume();
          const code = fault.status === 429 ? 'TOOMANYREQUESTS' : fault.status === 503 ? 'UNAVAILABLE' : 'UNKNOWN';
          res.writeHead(fault.status, {
            'content-type': 'application/json',
            ...(fault.retryAfter !== undefined ? { 'retry-after': String(fault.retryAfter) } : {}),
          });
          res.end(JSON.stringify({ errors: [{ code, message: `fault proxy: injected ${fault.status}` }] }));
          record.status = fault.status;
          return;
        }
        case 'redirect':
          req.resume();
          res.writeHead(307, { location: `http://${otherHost}${req.url ?? '/'}`, 'content-length': '0' }).end();
          record.status = 307;
          return;
        case 'ignoreRange':
          delete req.headers.range;
          delete req.headers['if-range'];
          break;
        case 'delay':
          await new Promise((r) => setTimeout(r, fault.ms));
          break;
        default:
          break;
      }
      record.status = await forward(req, res, host, fault);
    })();
  });

  const other = createServer((req, res) => {
    otherRequests.push({ method: req.method ?? 'GET', path: req.url ?? '/', headers: { ...req.headers } });
    void forward(req, res, otherHost, undefined, redirectUrl);
  });

  const port = await listen(main, '127.0.0.1');
  host = `127.0.0.1:${port}`;
  try {
    otherHost = `127.0.0.2:${await listen(other, '127.0.0.2')}`;
  } catch (err) {
    main.close();
    throw err;
  }

  let stopped: Promise<void> | undefined;
  return {
    host,
    url: `http://${host}`,
    otherHost,
    otherRequests,
    requests,
    peakBlobGets: () => peak,
    addFault: (fault) => void faults.push({ fault, remaining: fault.times ?? 1 }),
    clearFaults: () => {
      faults.splice(0);
      peak = blobGets;
    },
    stop: () =>
      (stopped ??= (async () => {
        for (const s of [main, other]) s.closeAllConnections();
        await Promise.all([main, other].map((s) => new Promise<void>((r) => s.close(() => r()))));
        agent.destroy();
      })()),
  };
}

/** Passes bytes through in 16 KiB slices at about `bytesPerSecond`. */
function throttle(bytesPerSecond: number): Transform {
  const slice = 16 * 1024;
  const pause = Math.max(1, Math.round((1000 * slice) / bytesPerSecond));
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      void (async () => {
        for (let i = 0; i < chunk.length; i += slice) {
          this.push(chunk.subarray(i, i + slice));
          await new Promise((r) => setTimeout(r, pause));
        }
        cb();
      })();
    },
  });
}
