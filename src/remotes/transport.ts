import { Readable } from 'node:stream';
import { BerthError } from '../errors.js';
import { Connection, requestHead, ResponseBody, type Headers, type TLSSettings } from './connection.js';
import type { RegistryEndpoint } from './hosts.js';
import { RetryableFailure } from './retry.js';

/**
 * HTTP for the registry client: a pool of keep-alive connections per origin
 * (connection.ts), the translation of socket, TLS and protocol errors into
 * BerthErrors, and BlobReader, the Fetcher's view of a blob body.
 */

export type { Headers, TLSSettings } from './connection.js';

export interface HttpResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: ResponseBody;
}

/** What a failing request was about, for messages: never a URL query, never a header. */
export interface RequestSubject {
  /** The registry host (endpoint) the exchange is with. */
  host: string;
  /** The canonical reference. */
  ref: string;
  /** "manifest …:tag", "blob sha256:…" */
  what: string;
}

const TLS_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'EPROTO',
]);

const CONNECT_WORDS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EPIPE: 'connection closed',
  ETIMEDOUT: 'connection timed out',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  EAI_AGAIN: 'temporary DNS failure',
  // WireError's (connection.ts)
  CONNECT_TIMEOUT: 'connect timed out',
  HTTP_CLOSED: 'connection closed by the server',
  HTTP_PROTOCOL: 'malformed HTTP response',
  HTTP_STALLED: 'no data in time',
};

function errorCode(err: unknown): string | undefined {
  const seen = new Set<unknown>();
  let e: unknown = err;
  while (e && typeof e === 'object' && !seen.has(e)) {
    seen.add(e);
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    const inner = (e as { errors?: unknown[] }).errors?.[0];
    e = inner ?? (e as { cause?: unknown }).cause;
  }
  return undefined;
}

const NETWORK_HINT = 'check the registry name, the network, or the mirror config (registries.yaml)';

/**
 * Translates an error from a socket, TLS or the HTTP exchange. Connection-level failures are
 * RetryableFailures; TLS and DNS "no such host" are final (retrying will not
 * fix a certificate or a typo). `target` is the host actually contacted when
 * it differs from the registry (a redirect, a token server).
 */
export function transportFailure(err: unknown, s: RequestSubject, target: string, signal?: AbortSignal): BerthError | RetryableFailure {
  if (err instanceof BerthError) return err;
  if (err instanceof RetryableFailure) return err;
  const via = target === s.host ? '' : ` (via ${target})`;
  const details = { host: s.host, ref: s.ref, ...(target !== s.host ? { target } : {}) };
  if (signal?.aborted) return new BerthError('CANCELLED', `registry ${s.host}: ${s.what}: cancelled`, { cause: err, details });
  const code = errorCode(err);
  // Without a code it is not a network failure but a bug; retrying would hide it.
  if (code === undefined) return new BerthError('INTERNAL', `registry ${s.host}: ${s.what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err, details });
  if (code === 'ABORT_ERR') return new BerthError('CANCELLED', `registry ${s.host}: ${s.what}: cancelled`, { cause: err, details });
  if (TLS_CODES.has(code) || code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_')) {
    return new BerthError('UNAVAILABLE', `registry ${s.host}${via}: TLS failure (${code}) fetching ${s.what}`, {
      cause: err,
      hint: 'if the registry uses a private CA, set tls.ca_file for it in registries.yaml; if it speaks plain HTTP, configure its endpoint as http://',
      details: { ...details, errorCode: code },
    });
  }
  if (code === 'ENOTFOUND') {
    return new BerthError('UNAVAILABLE', `registry ${s.host}${via}: host not found (DNS) fetching ${s.what}`, { cause: err, hint: NETWORK_HINT, details: { ...details, errorCode: code } });
  }
  const words = CONNECT_WORDS[code] ?? 'request failed';
  const error = new BerthError('UNAVAILABLE', `registry ${s.host}${via}: ${words} (${code}) fetching ${s.what}`, {
    cause: err,
    hint: NETWORK_HINT,
    details: { ...details, errorCode: code },
  });
  return new RetryableFailure(error, `${words} (${code})`);
}

export function header(res: HttpResponse, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

export function tlsOf(ep: RegistryEndpoint): TLSSettings {
  return {
    ...(ep.ca ? { ca: ep.ca } : {}),
    ...(ep.cert ? { cert: ep.cert } : {}),
    ...(ep.key ? { key: ep.key } : {}),
    ...(ep.insecureSkipVerify !== undefined ? { insecureSkipVerify: ep.insecureSkipVerify } : {}),
  };
}

export interface SendOptions {
  method: 'GET' | 'HEAD';
  headers: Headers;
  signal?: AbortSignal | undefined;
  /** TLS settings for https:// origins; none means the system's roots. */
  tls?: TLSSettings | undefined;
}

/** Keep-alive connections per origin; one exchange per connection at a time. */
export class HttpTransport {
  private readonly idle = new Map<string, Connection[]>();
  private readonly live = new Set<Connection>();

  /** One HTTP exchange; throws what transportFailure makes of a failure. */
  async send(url: URL, opts: SendOptions, s: RequestSubject): Promise<HttpResponse> {
    const signal = opts.signal;
    try {
      if (url.protocol !== 'http:' && url.protocol !== 'https:') {
        throw new BerthError('UNSUPPORTED', `registry ${s.host}: cannot fetch ${s.what} over ${url.protocol}`, { details: { host: s.host, ref: s.ref } });
      }
      signal?.throwIfAborted();
      const text = requestHead(opts.method, url, opts.headers);
      const origin = `${url.protocol}//${url.host}`;
      for (;;) {
        const conn = this.idle.get(origin)?.pop() ?? this.open(origin, url, opts.tls);
        const { ex, head } = conn.request(opts.method, text);
        const abort = (): void => conn.abort(ex);
        signal?.addEventListener('abort', abort, { once: true });
        ex.onSettled = () => signal?.removeEventListener('abort', abort);
        try {
          const h = await head;
          return { status: h.status, headers: h.headers, body: new ResponseBody(conn, ex) };
        } catch (err) {
          // A kept-alive connection the server closed just before the request: try a new one.
          if (conn.served > 1 && conn.responseBytes === 0 && !signal?.aborted && !(err instanceof BerthError)) continue;
          throw err;
        }
      }
    } catch (err) {
      throw transportFailure(err, s, url.host, signal);
    }
  }

  async close(): Promise<void> {
    for (const c of [...this.live]) c.close();
    this.idle.clear();
  }

  private open(origin: string, url: URL, tls: TLSSettings | undefined): Connection {
    const c = new Connection(origin, url, tls, {
      idle: (conn) => {
        const list = this.idle.get(conn.key) ?? [];
        list.push(conn);
        this.idle.set(conn.key, list);
      },
      gone: (conn) => {
        this.live.delete(conn);
        const list = this.idle.get(conn.key);
        const i = list?.indexOf(conn) ?? -1;
        if (list && i >= 0) list.splice(i, 1);
      },
    });
    this.live.add(c);
    return c;
  }
}

/** Reads a body up to `cap` bytes; `over` when it had more (the rest is discarded). */
export async function readCapped(body: Readable, cap: number): Promise<{ bytes: Buffer; over: boolean }> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    n += chunk.length;
    if (n > cap) {
      abandon(body);
      return { bytes: Buffer.concat(chunks), over: true };
    }
    chunks.push(chunk);
  }
  return { bytes: Buffer.concat(chunks), over: false };
}

/** Drops a body mid-way (its connection is closed); a pending read errors with nothing listening. */
export function abandon(body: Readable): void {
  body.on('error', () => {});
  body.destroy();
}

/** Discards a body we do not need so the connection can be reused. */
export async function discard(res: HttpResponse): Promise<void> {
  try {
    await res.body.dump({ limit: 64 * 1024 });
  } catch {
    // A broken body of an already-failed response changes nothing.
  }
}

/** Size of the fresh chunks BlobReader.stream emits. */
const STREAM_CHUNK = 256 * 1024;

/**
 * A blob body for the Fetcher (see BlobBody): counts bytes and turns a body
 * that breaks or ends short into an error the caller can act on
 * (UNAVAILABLE for a reset, TRUNCATED for a short body), naming the host and
 * digest.
 */
export class BlobReader {
  private received = 0;
  private readable: Readable | undefined;

  constructor(
    private readonly source: ResponseBody,
    readonly offset: number,
    private readonly expected: number | undefined,
    private readonly subject: RequestSubject & { digest: string },
    private readonly target: string,
  ) {}

  async readInto(buf: Uint8Array): Promise<number> {
    let n: number;
    try {
      n = await this.source.readInto(buf);
    } catch (err) {
      throw this.translate(err);
    }
    this.received += n;
    if (n === 0 && this.expected !== undefined && this.received < this.expected) throw this.truncated();
    return n;
  }

  /** The body as a stream of fresh chunks (made on first use). */
  get stream(): Readable {
    this.readable ??= new Readable({
      highWaterMark: STREAM_CHUNK,
      read: () => {
        const buf = Buffer.allocUnsafe(STREAM_CHUNK);
        this.readInto(buf).then(
          (n) => this.readable!.push(n === 0 ? null : buf.subarray(0, n)),
          (err: unknown) => this.readable!.destroy(err as Error),
        );
      },
      destroy: (err, cb) => {
        this.source.destroy();
        cb(err);
      },
    });
    return this.readable;
  }

  cancel(): void {
    this.source.destroy();
  }

  private truncated(): BerthError {
    const s = this.subject;
    return new BerthError('TRUNCATED', `registry ${s.host}: blob ${s.digest} ended after ${this.received} of ${this.expected} bytes (from offset ${this.offset})`, {
      details: { host: s.host, ref: s.ref, digest: s.digest, offset: this.offset, received: this.received, expected: this.expected },
    });
  }

  private translate(err: unknown): BerthError {
    const f = transportFailure(err, this.subject, this.target);
    const e = f instanceof RetryableFailure ? f.error : f;
    const s = this.subject;
    return new BerthError(e.code, `${e.message} after ${this.received} bytes`, {
      cause: err,
      ...(e.hint !== undefined ? { hint: e.hint } : {}),
      details: { ...e.details, digest: s.digest, offset: this.offset, received: this.received },
    });
  }
}
