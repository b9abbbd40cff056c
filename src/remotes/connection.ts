import { connect as netConnect, isIP, type OnReadOpts, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { connect as tlsConnect, createSecureContext, type ConnectionOptions, type SecureContext } from 'node:tls';
import { BerthError } from '../errors.js';

/**
 * The registry client's HTTP/1.1 on node:net and node:tls: one connection,
 * one exchange at a time (no pipelining), keep-alive, Content-Length, chunked
 * and close-delimited bodies, TLS with the endpoint's CA, client certificate
 * and verification settings. GET and HEAD only; no redirects, auth, retries
 * or decompression (RegistryResolver.exchange does those, and a
 * content-addressed client wants the bytes the server stored).
 *
 * Why not undici: on loopback it spends several times curl's CPU per byte,
 * mostly per chunk (a fresh Buffer per socket read, stream plumbing, GC), and
 * importing it costs ~0.25 s of CPU at every start. Here the socket reads
 * (`onread`) straight into the caller's buffer (ResponseBody.readInto), so a
 * body of known length arrives with neither a copy nor an allocation.
 *
 * Failures are errors with a `code` (the socket's, TLS's, or WireError's)
 * that transportFailure (transport.ts) translates.
 */

export type Headers = Record<string, string>;

export interface TLSSettings {
  ca?: ReadonlyArray<string | Buffer>;
  cert?: Buffer;
  key?: Buffer;
  insecureSkipVerify?: boolean;
}

/**
 * TLS contexts by CA list. Passing `ca` to tls.connect parses every
 * certificate again for each connection (~150 for the system roots plus
 * NODE_EXTRA_CA_CERTS); one context per list, made on first use, is reused.
 * A client certificate gets a context per connection, as before.
 */
const contexts = new WeakMap<ReadonlyArray<string | Buffer>, SecureContext>();

function caOptions(tls: TLSSettings | undefined): { secureContext: SecureContext } | { ca: Array<string | Buffer> } | Record<string, never> {
  if (!tls?.ca) return {};
  if (tls.cert || tls.key) return { ca: [...tls.ca] };
  let context = contexts.get(tls.ca);
  if (!context) contexts.set(tls.ca, (context = createSecureContext({ ca: [...tls.ca] })));
  return { secureContext: context };
}

/** Connection-owned buffer for response heads, chunk framing and reads while no caller buffer waits. */
const SCRATCH_BYTES = 64 * 1024;
/** Response heads (and chunk-size lines) must fit in this much of scratch. */
const MAX_HEAD_BYTES = 48 * 1024;
const MAX_FRAMING_LINE = 4 * 1024;
const CONNECT_TIMEOUT_MS = 10_000;
/** No byte for this long while a response is awaited or read: the exchange fails (undici's headers and body timeouts). */
const STALL_TIMEOUT_MS = 300_000;
/** Idle keep-alive connections are closed after this long (undici's keepAliveTimeout). */
const KEEP_ALIVE_MS = 4_000;
/**
 * A body read hands over what it has at the first bytes that come this long
 * after its first byte, full or not. At loopback speed a 4 MiB buffer fills
 * in milliseconds, so this never applies; on a slow link it bounds what a
 * kill or power cut loses before it was written (at 100 KB/s, a full 4 MiB
 * buffer is 40 s).
 */
const PARTIAL_READ_MS = 50;
/** Buffer size for the Readable face of a body (small bodies, error documents). */
const STREAM_CHUNK = 64 * 1024;

/** A failure with a code transportFailure knows (CONNECT_WORDS). */
export class WireError extends Error {
  constructor(
    readonly code: 'HTTP_CLOSED' | 'HTTP_PROTOCOL' | 'HTTP_STALLED' | 'CONNECT_TIMEOUT' | 'ABORT_ERR',
    message: string,
  ) {
    super(message);
    this.name = 'WireError';
  }
}

type Framing =
  | { kind: 'length'; remaining: number }
  | { kind: 'chunked'; state: 'size' | 'data' | 'data-crlf' | 'trailer' | 'done'; remaining: number }
  | { kind: 'close' };

export interface HeadResult {
  status: number;
  headers: Record<string, string | string[]>;
}

/** The bytes of a request without a body; INTERNAL for a header that would break the framing. */
export function requestHead(method: 'GET' | 'HEAD', url: URL, headers: Headers): string {
  let text = `${method} ${url.pathname}${url.search} HTTP/1.1\r\nhost: ${url.host}\r\n`;
  for (const [k, v] of Object.entries(headers)) {
    if (/[\r\n]/.test(k) || /[\r\n]/.test(v)) throw new BerthError('INTERNAL', `HTTP header ${JSON.stringify(k)} contains a line break`);
    text += `${k}: ${v}\r\n`;
  }
  return text + '\r\n';
}

/** One request and its response on a connection. */
export class Exchange {
  constructor(readonly method: 'GET' | 'HEAD') {}

  head: { resolve(h: HeadResult): void; reject(err: Error): void } | undefined;
  framing: Framing = { kind: 'close' };
  /** The body has been received and delivered completely. */
  done = false;
  error: Error | undefined;
  /** Runs once when the exchange is over, either way. */
  onSettled: (() => void) | undefined;

  settle(error?: Error): void {
    if (this.done || this.error) return;
    if (error) this.error = error;
    else this.done = true;
    this.onSettled?.();
  }
}

interface BodyRead {
  buf: Uint8Array;
  filled: number;
  resolve(n: number): void;
  reject(err: Error): void;
  /** Marks the read `due` PARTIAL_READ_MS after its first byte (see ResponseBody.readInto). */
  partial?: NodeJS.Timeout;
  /** Settle at the next bytes, full or not. */
  due?: boolean;
}

/**
 * A response body that can be read into the caller's own buffers
 * (`readInto`). It is also a Readable of fresh chunks, for callers that want
 * a stream; use one or the other.
 */
export class ResponseBody extends Readable {
  private pending = false;

  constructor(
    private readonly conn: Connection,
    private readonly ex: Exchange,
  ) {
    super({ highWaterMark: STREAM_CHUNK });
  }

  /**
   * Reads the next bytes into `buf`, filling it unless the body ends first
   * or bytes come in more than PARTIAL_READ_MS after its first byte (a slow
   * network still hands over, and so gets written and kept, what it
   * brought). Resolves to
   * the number of bytes, 0 at the end of the body. The socket writes into
   * `buf` only until the promise settles.
   */
  readInto(buf: Uint8Array): Promise<number> {
    return this.conn.readBody(this.ex, buf);
  }

  /** Reads and drops the rest of the body up to `limit` bytes; a longer body closes the connection instead. */
  async dump(opts: { limit?: number } = {}): Promise<void> {
    const limit = opts.limit ?? 128 * 1024;
    const sink = Buffer.allocUnsafe(STREAM_CHUNK);
    for (let n = 0; ; ) {
      const got = await this.conn.readBody(this.ex, sink);
      if (got === 0) break;
      n += got;
      if (n > limit) break;
    }
    this.destroy();
  }

  override _read(): void {
    if (this.pending) return;
    this.pending = true;
    const buf = Buffer.allocUnsafe(STREAM_CHUNK);
    this.conn.readBody(this.ex, buf).then(
      (n) => {
        this.pending = false;
        this.push(n === 0 ? null : buf.subarray(0, n));
      },
      (err: unknown) => {
        this.pending = false;
        this.destroy(err as Error);
      },
    );
  }

  override _destroy(err: Error | null, cb: (error: Error | null) => void): void {
    this.conn.abandon(this.ex);
    cb(err);
  }
}

/**
 * One HTTP/1.1 connection, serving one exchange at a time. Between
 * exchanges it is idle in the pool and keeps reading, only to notice the
 * server closing it.
 *
 * Where the socket reads: `nextBuffer()` picks the buffer for the next read
 * right after each read (that is how `onread` works): the caller's buffer
 * while a body read waits and nothing is buffered, else scratch. A body read
 * completes only inside the read callback, or without any read when buffered
 * bytes satisfy it, or when the socket is gone; in each case the next buffer
 * is not the caller's. So the socket never writes into a buffer its caller
 * got back.
 */
export class Connection {
  readonly socket: Socket;
  private readonly scratch = Buffer.allocUnsafeSlow(SCRATCH_BYTES);
  /** Buffered, unconsumed bytes are scratch[start, end). */
  private start = 0;
  private end = 0;
  /** The exchange whose response is being received; undefined while idle. */
  private current: Exchange | undefined;
  private target: BodyRead | undefined;
  private keepAlive = false;
  /** The socket has ended or failed; the buffered rest of a body that was received completely may still be read. */
  private gone = false;
  /** The server ended a close-delimited body. */
  private eof = false;
  /** Exchanges served so far; a reused connection that fails before any response byte is retried on a new one. */
  served = 0;
  responseBytes = 0;
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly key: string,
    url: URL,
    tls: TLSSettings | undefined,
    private readonly pool: { idle(c: Connection): void; gone(c: Connection): void },
  ) {
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    const port = Number(url.port) || (url.protocol === 'https:' ? 443 : 80);
    const onread: OnReadOpts = { buffer: () => this.nextBuffer(), callback: (n, buf) => this.onRead(n, buf) };
    if (url.protocol === 'https:') {
      // TLSSocket takes `onread` like net.Socket (Node >= 20); @types/node does not list it.
      const options: ConnectionOptions & { onread: OnReadOpts } = {
        host,
        port,
        ...(isIP(host) ? {} : { servername: host }),
        ...caOptions(tls),
        ...(tls?.cert ? { cert: tls.cert } : {}),
        ...(tls?.key ? { key: tls.key } : {}),
        rejectUnauthorized: !tls?.insecureSkipVerify,
        ALPNProtocols: ['http/1.1'],
        onread,
      };
      this.socket = tlsConnect(options);
    } else {
      this.socket = netConnect({ host, port, onread });
    }
    this.socket.setNoDelay(true);
    this.socket.setTimeout(CONNECT_TIMEOUT_MS);
    this.socket.once(url.protocol === 'https:' ? 'secureConnect' : 'connect', () => this.socket.setTimeout(STALL_TIMEOUT_MS));
    this.socket.on('timeout', () => {
      if (!this.current) this.close();
      else this.fail(new WireError(this.socket.connecting ? 'CONNECT_TIMEOUT' : 'HTTP_STALLED', 'no data from the server in time'));
    });
    this.socket.on('error', (err) => this.fail(err));
    this.socket.on('end', () => this.onEnd());
    this.socket.on('close', () => this.fail(new WireError('HTTP_CLOSED', 'connection closed by the server')));
    this.socket.resume();
  }

  /** Sends a request (see requestHead); `head` resolves with the response head once it arrived. */
  request(method: 'GET' | 'HEAD', text: string): { ex: Exchange; head: Promise<HeadResult> } {
    clearTimeout(this.idleTimer);
    this.socket.ref();
    const ex = new Exchange(method);
    const head = new Promise<HeadResult>((resolve, reject) => (ex.head = { resolve, reject }));
    this.current = ex;
    this.served++;
    this.responseBytes = 0;
    this.socket.write(text);
    return { ex, head };
  }

  /** A read of `ex`'s body into `buf`; see ResponseBody.readInto. */
  readBody(ex: Exchange, buf: Uint8Array): Promise<number> {
    if (ex.error) return Promise.reject(ex.error);
    if (ex !== this.current || ex.done || buf.length === 0) return Promise.resolve(0);
    if (ex.head) return Promise.reject(new BerthError('INTERNAL', 'a response body was read before its head'));
    if (this.target) return Promise.reject(new BerthError('INTERNAL', 'a response body was read twice at once'));
    const p = new Promise<number>((resolve, reject) => {
      const t: BodyRead = {
        buf,
        filled: 0,
        resolve: (n) => (clearTimeout(t.partial), resolve(n)),
        reject: (err) => (clearTimeout(t.partial), reject(err)),
      };
      this.target = t;
    });
    this.process();
    if (this.target && !this.gone) this.socket.resume();
    return p;
  }

  /** The body's reader let go before its end: the connection cannot be reused. */
  abandon(ex: Exchange): void {
    if (ex === this.current) this.fail(new WireError('HTTP_CLOSED', 'response body abandoned'), true);
  }

  /** Aborts `ex` if it is still running (its signal fired). */
  abort(ex: Exchange): void {
    if (ex === this.current) this.fail(new WireError('ABORT_ERR', 'request aborted'), true);
  }

  close(): void {
    this.fail(new WireError('HTTP_CLOSED', 'connection closed'));
  }

  private nextBuffer(): Uint8Array {
    const t = this.target;
    const f = this.current?.framing;
    if (t && f && !this.current?.head && f.kind !== 'chunked' && this.start === this.end) {
      const room = t.buf.length - t.filled;
      return t.buf.subarray(t.filled, t.filled + (f.kind === 'length' ? Math.min(room, f.remaining) : room));
    }
    if (this.start > 0) {
      this.scratch.copyWithin(0, this.start, this.end);
      this.end -= this.start;
      this.start = 0;
    }
    // Never read past a body of known length, so the bytes of a later response never land in a caller's buffer.
    const limit = f?.kind === 'length' && !this.current?.head && f.remaining > 0 ? f.remaining : SCRATCH_BYTES;
    // Scratch does not fill up: heads and framing lines are capped well below its size, and in a body the socket
    // reads only while a caller's read waits, which takes the buffered bytes first. An empty buffer would read as EOF.
    const view = this.scratch.subarray(this.end, this.end + Math.min(SCRATCH_BYTES - this.end, limit));
    if (view.length === 0) this.fail(new BerthError('INTERNAL', 'HTTP read buffer full'), true);
    return view.length === 0 ? this.scratch : view;
  }

  private onRead(n: number, buf: Uint8Array): boolean {
    this.responseBytes += n;
    const ex = this.current;
    if (!ex) {
      this.fail(new WireError('HTTP_PROTOCOL', 'the server sent data on an idle connection'), true);
      return false;
    }
    const t = this.target;
    if (t && buf.buffer === t.buf.buffer && buf.byteOffset === t.buf.byteOffset + t.filled) {
      t.filled += n;
      if (ex.framing.kind === 'length') ex.framing.remaining -= n;
    } else {
      this.end += n;
      if (!ex.head && ex.framing.kind === 'length') ex.framing.remaining -= n;
    }
    this.process();
    // Keep reading while a head or a body read waits; otherwise the kernel's socket buffer holds the rest.
    return this.current === undefined || this.current.head !== undefined || this.target !== undefined;
  }

  /** Moves buffered bytes on: parses a head, fills the waiting body read, finishes the body. */
  private process(): void {
    const ex = this.current;
    if (!ex) return;
    if (ex.head && !this.parseHead(ex)) return;
    const f = ex.framing;
    const t = this.target;
    if (f.kind === 'chunked') this.unchunk(f);
    else if (t && this.end > this.start) {
      // Bytes that came with the head, or landed in scratch.
      const n = Math.min(this.end - this.start, t.buf.length - t.filled);
      t.buf.set(this.scratch.subarray(this.start, this.start + n), t.filled);
      t.filled += n;
      this.start += n;
    }
    if (ex !== this.current) return; // failed meanwhile
    const received = this.received(f);
    if (received && f.kind === 'chunked' && this.end > this.start) return this.fail(new WireError('HTTP_PROTOCOL', 'bytes after the end of a chunked body'), true);
    const delivered = received && this.end === this.start;
    if (t && (t.filled === t.buf.length || delivered || (t.due && t.filled > 0))) {
      this.target = undefined;
      t.resolve(t.filled);
    } else if (t && t.filled > 0 && !t.partial) {
      // Only marked here: node picks the buffer of the socket's next read right after each read, so a read settled
      // from a timer would leave that buffer pointing into the caller's. The next read (onRead, then here) settles it.
      t.partial = setTimeout(() => (t.due = true), PARTIAL_READ_MS);
    }
    if (delivered) this.finish(ex);
  }

  /** All of the body has come off the socket (some may still wait in scratch). */
  private received(f: Framing): boolean {
    return f.kind === 'length' ? f.remaining === 0 : f.kind === 'chunked' ? f.state === 'done' : this.eof;
  }

  /** Parses the response head if it is all there; false when not (yet). */
  private parseHead(ex: Exchange): boolean {
    for (;;) {
      const i = this.scratch.indexOf('\r\n\r\n', this.start, 'latin1');
      const complete = i >= 0 && i + 4 <= this.end;
      if ((complete ? i : this.end) - this.start > MAX_HEAD_BYTES) {
        this.fail(new WireError('HTTP_PROTOCOL', `response head larger than ${MAX_HEAD_BYTES} bytes`), true);
        return false;
      }
      if (!complete) return false;
      const lines = this.scratch.toString('latin1', this.start, i).split('\r\n');
      this.start = i + 4;
      const m = /^HTTP\/1\.([01]) (\d{3})/.exec(lines[0] ?? '');
      if (!m) {
        this.fail(new WireError('HTTP_PROTOCOL', 'malformed HTTP status line'), true);
        return false;
      }
      const status = Number(m[2]);
      if (status >= 100 && status < 200) continue; // interim (100 Continue, 103 Early Hints)
      const headers: Record<string, string | string[]> = {};
      for (const line of lines.slice(1)) {
        const c = line.indexOf(':');
        if (c <= 0) continue;
        const k = line.slice(0, c).trim().toLowerCase();
        const v = line.slice(c + 1).trim();
        const prev = headers[k];
        headers[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
      }
      const connection = String(headers['connection'] ?? '').toLowerCase();
      this.keepAlive = m[1] === '1' ? !connection.includes('close') : connection.includes('keep-alive');
      const length = headers['content-length'];
      const buffered = this.end - this.start;
      if (ex.method === 'HEAD' || status === 204 || status === 304) ex.framing = { kind: 'length', remaining: 0 };
      else if (String(headers['transfer-encoding'] ?? '').toLowerCase().includes('chunked')) ex.framing = { kind: 'chunked', state: 'size', remaining: 0 };
      else if (typeof length === 'string' && /^\d{1,15}$/.test(length)) {
        if (Number(length) < buffered) {
          this.fail(new WireError('HTTP_PROTOCOL', 'more bytes than the Content-Length'), true);
          return false;
        }
        ex.framing = { kind: 'length', remaining: Number(length) - buffered };
      } else if (length !== undefined) {
        this.fail(new WireError('HTTP_PROTOCOL', 'invalid Content-Length'), true);
        return false;
      } else {
        ex.framing = { kind: 'close' };
        this.keepAlive = false;
      }
      const h = ex.head!;
      ex.head = undefined;
      h.resolve({ status, headers });
      return true;
    }
  }

  /** Chunked decoding: copies chunk data from scratch into the waiting read, consuming the framing. */
  private unchunk(f: Framing & { kind: 'chunked' }): void {
    const s = this.scratch;
    while (f.state !== 'done') {
      if (f.state === 'data') {
        const t = this.target;
        if (!t || this.end === this.start || t.filled === t.buf.length) return;
        const n = Math.min(f.remaining, this.end - this.start, t.buf.length - t.filled);
        t.buf.set(s.subarray(this.start, this.start + n), t.filled);
        t.filled += n;
        this.start += n;
        f.remaining -= n;
        if (f.remaining === 0) f.state = 'data-crlf';
        continue;
      }
      const eol = s.indexOf('\r\n', this.start, 'latin1');
      if (eol < 0 || eol + 2 > this.end) {
        if (this.end - this.start > MAX_FRAMING_LINE) this.fail(new WireError('HTTP_PROTOCOL', 'chunk framing line too long'), true);
        return;
      }
      const line = s.toString('latin1', this.start, eol);
      this.start = eol + 2;
      if (f.state === 'data-crlf') {
        if (line !== '') return this.fail(new WireError('HTTP_PROTOCOL', 'malformed chunk end'), true);
        f.state = 'size';
      } else if (f.state === 'size') {
        const size = /^([0-9a-fA-F]{1,12})\s*(;.*)?$/.exec(line);
        if (!size) return this.fail(new WireError('HTTP_PROTOCOL', 'malformed chunk size'), true);
        f.remaining = parseInt(size[1]!, 16);
        f.state = f.remaining === 0 ? 'trailer' : 'data';
      } else if (line === '') {
        f.state = 'done'; // end of the trailer section
      }
    }
  }

  /** The exchange's body was delivered completely: back to the pool, or closed. */
  private finish(ex: Exchange): void {
    this.current = undefined;
    ex.settle();
    if (!this.keepAlive || this.gone) {
      this.close();
      return;
    }
    this.socket.unref();
    this.idleTimer = setTimeout(() => this.close(), KEEP_ALIVE_MS).unref();
    this.pool.idle(this);
    this.socket.resume(); // watch for the server closing
  }

  private onEnd(): void {
    const ex = this.current;
    // The end of a close-delimited body; anything else is the server giving up.
    if (ex && !ex.head && ex.framing.kind === 'close') this.eof = true;
    this.fail(new WireError('HTTP_CLOSED', 'connection closed by the server'));
  }

  /**
   * The socket is done for. The current exchange fails, unless all of its
   * body was received (it is still read from scratch) and `force` is not set
   * (the reader let go, the signal fired, the response was malformed).
   */
  private fail(err: Error, force = false): void {
    const ex = this.current;
    clearTimeout(this.idleTimer);
    if (!this.gone) {
      this.gone = true;
      this.pool.gone(this);
    }
    this.socket.destroy();
    if (!ex) return;
    if (!force && !ex.head && this.received(ex.framing)) {
      this.process();
      return;
    }
    this.current = undefined;
    const h = ex.head;
    const t = this.target;
    ex.head = undefined;
    this.target = undefined;
    ex.settle(err);
    h?.reject(err);
    // Bytes that arrived before the failure are delivered; the next read fails.
    if (t && t.filled > 0) t.resolve(t.filled);
    else t?.reject(err);
  }
}
