import { Readable } from 'node:stream';
import { Pool } from 'undici';
import { BerthError } from '../errors.js';
import type { RegistryEndpoint } from './hosts.js';
import { RetryableFailure } from './retry.js';

/**
 * HTTP for the registry client: one undici Pool per origin (keep-alive,
 * TLS settings of the endpoint) for everything but blob bodies (those go
 * through BlobTransport), and the translation of undici, socket and
 * BlobTransport errors into BerthErrors. Neither client follows redirects
 * nor decompresses, which is what a content-addressed client needs: the
 * bytes hashed are the bytes the server stored.
 */

export type Headers = Record<string, string>;

/** A response body of either client: a Readable that can also be drained for connection reuse. */
export type ResponseBodyStream = Readable & { dump(opts?: { limit?: number }): Promise<void> };

export interface HttpResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: ResponseBodyStream;
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
  UND_ERR_SOCKET: 'connection closed by the server',
  UND_ERR_CONNECT_TIMEOUT: 'connect timed out',
  UND_ERR_HEADERS_TIMEOUT: 'no response headers in time',
  UND_ERR_BODY_TIMEOUT: 'body stalled',
  UND_ERR_CLOSED: 'connection closed',
  UND_ERR_DESTROYED: 'connection destroyed',
  // BlobTransport's own (WireError)
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
 * Translates an error from undici or a socket. Connection-level failures are
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
  if (code === 'UND_ERR_ABORTED' || code === 'ABORT_ERR') return new BerthError('CANCELLED', `registry ${s.host}: ${s.what}: cancelled`, { cause: err, details });
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

export interface TLSSettings {
  ca?: Buffer[];
  cert?: Buffer;
  key?: Buffer;
  insecureSkipVerify?: boolean;
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
  /** TLS settings used when the origin's pool is first created. */
  tls?: TLSSettings;
}

export class HttpTransport {
  private readonly pools = new Map<string, Pool>();

  private pool(origin: string, tls: TLSSettings | undefined): Pool {
    let p = this.pools.get(origin);
    if (!p) {
      p = new Pool(origin, {
        connect: {
          ...(tls?.ca ? { ca: tls.ca } : {}),
          ...(tls?.cert ? { cert: tls.cert } : {}),
          ...(tls?.key ? { key: tls.key } : {}),
          rejectUnauthorized: !tls?.insecureSkipVerify,
        },
      });
      this.pools.set(origin, p);
    }
    return p;
  }

  /** One HTTP exchange; throws what transportFailure makes of a failure. */
  async send(url: URL, opts: SendOptions, s: RequestSubject): Promise<HttpResponse> {
    try {
      const res = await this.pool(url.origin, opts.tls).request({
        path: url.pathname + url.search,
        method: opts.method,
        headers: opts.headers,
        signal: opts.signal ?? null,
      });
      return { status: res.statusCode, headers: res.headers, body: res.body };
    } catch (err) {
      throw transportFailure(err, s, url.host, opts.signal);
    }
  }

  async close(): Promise<void> {
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((p) => p.destroy()));
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

/** Drops a body mid-way; undici then errors it with an abort nobody needs to hear. */
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

/** What BlobReader reads from: a BlobTransport response body. */
export interface BufferReader {
  /** Fills `buf` unless the body ends first; 0 at the end. */
  readInto(buf: Uint8Array): Promise<number>;
  destroy(): void;
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
    private readonly source: BufferReader,
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
