import { connect } from 'node:net';
import { constants as osConstants } from 'node:os';
import { join, resolve } from 'node:path';
import { StringDecoder } from 'node:string_decoder';

/**
 * The thin client: when `berth daemon` runs on the line's --state, a
 * container command is handed to it (POST /cli on --state/api.sock, see
 * api/server.ts) instead of loading berth's module graph and the store in
 * this process, as ctr is a client of a running containerd. The daemon runs
 * the line with its already open System; this process only streams the
 * output back, passes signals on and exits with the command's code.
 *
 * This module is loaded before anything else of berth, on every run: it
 * imports node builtins only, and reads of the line just enough to find the
 * socket. Everything else (parsing, validation, errors) is the daemon's, by
 * the same code as locally, so messages and exit codes are the same.
 */

/**
 * The commands the daemon runs for its clients (cli/daemon.ts refuses the
 * rest): the container commands that need nothing of the client's process
 * but its output streams and signals, and `events`, which the daemon
 * answers after storing the events it has (so a reader sees what the
 * daemon's commands did). Not exec (it hands the client's terminal
 * descriptors to the process), nor the rest.
 */
export const REMOTE_COMMANDS: ReadonlySet<string> = new Set(['run', 'create', 'start', 'stop', 'rm', 'ps', 'logs', 'events']);

/** Every command of the CLI (cli/run.ts; a test keeps the two equal), for naming a command before the CLI is loaded. */
export const COMMAND_NAMES: ReadonlySet<string> = new Set([
  'apply', 'bundle create', 'cleanup', 'content verify', 'create', 'daemon', 'events', 'exec', 'explain', 'gc',
  'image export', 'image import', 'image inspect', 'image ls', 'image pull', 'image rm', 'image unpack',
  'logs', 'plan', 'ps', 'rm', 'run', 'start', 'status', 'stop', 'validate',
]);

/** The line's command ("plan", "image pull"), or undefined when it names none (then it only prints help or an error). */
export function commandOf(argv: readonly string[]): string | undefined {
  const words: string[] = [];
  for (let i = 0; i < argv.length && words.length < 2; i++) {
    const a = argv[i]!;
    if (a === '--') break;
    if (a.startsWith('-')) {
      if (VALUED.has(a)) i++;
      continue;
    }
    words.push(a);
    if (COMMAND_NAMES.has(words.join(' '))) return words.join(' ');
  }
  return undefined;
}

/** Global options that take a value (cli/args.ts globalOptionSpec; a test keeps the two equal): their value is not a command word. */
export const VALUED = new Set(['--root', '--state', '--log-level', '--output', '-o', '--registry-config']);

/** What the client needs of its process. */
export interface RemoteProcess {
  env: Record<string, string | undefined>;
  cwd: string;
  stdout: { write(s: string): unknown; isTTY?: boolean };
  stderr: { write(s: string): unknown; isTTY?: boolean };
  /** Calls fn with the number of SIGINT, SIGTERM or SIGHUP when the process gets one; returns a function that stops. */
  onSignal(fn: (signal: number) => void): () => void;
  /** Ends the process by the signal (its handlers are off): the command did not handle it, so it ends the client as it would a local berth. */
  die(signal: number): void;
}

/**
 * The daemon socket a line would be served on, or undefined when the line's
 * command is not one the daemon serves. Only the first command word and
 * --state are read (`--state DIR`, `--state=DIR`, else BERTH_STATE, else
 * /run/berth); anything after `--` is the container's.
 */
export function remoteSocket(argv: readonly string[], env: Record<string, string | undefined>, cwd: string): string | undefined {
  let command: string | undefined;
  let state: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') break;
    if (a.startsWith('--state=')) state = a.slice('--state='.length);
    else if (VALUED.has(a)) {
      if (a === '--state') state = argv[i + 1];
      i++;
    } else if (!a.startsWith('-')) command ??= a;
  }
  if (command === undefined || !REMOTE_COMMANDS.has(command)) return undefined;
  return join(resolve(cwd, state ?? env.BERTH_STATE ?? '/run/berth'), 'api.sock');
}

/**
 * Only the keys berth reads, of an environment: what the client sends, and
 * (not trusting the client) what the daemon lets a served command see.
 */
export function berthEnv(env: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined && (k.startsWith('BERTH_') || k === 'DOCKER_CONFIG' || k === 'HOME' || k === 'PATH')) out[k] = v;
  return out;
}

/** A frame of the daemon's reply (api/server.ts serveCli): output, the exit code, or the signal that ended the command. */
interface Frame {
  stdout?: string;
  stderr?: string;
  exit?: number;
  signal?: number;
}

/**
 * Runs the line through the daemon on `socket`. Resolves to the command's
 * exit code, or undefined when no daemon took it (no socket, a stale one,
 * or a daemon that does not run this line: other --root, an older daemon),
 * in which case the caller runs it itself and nothing was printed.
 *
 * HTTP/1.1 by hand on node:net, one exchange per connection: the request
 * body is chunked (the line, then a line per signal), the reply is read as
 * it arrives. node:http would do the same, but loading and setting it up
 * took ~8 ms of a served command's ~35 ms in its client.
 */
export function runRemote(argv: string[], socket: string, proc: RemoteProcess, opts: { answerTimeoutMs?: number } = {}): Promise<number | undefined> {
  return new Promise((settle) => {
    const conn = connect({ path: socket });
    const chunk = (value: unknown): string => {
      const text = JSON.stringify(value) + '\n';
      return `${Buffer.byteLength(text).toString(16)}\r\n${text}\r\n`;
    };
    // The request first, in one write: node:net holds it until the connection is up and sends it before the
    // 'connect' listener below runs, so the daemon starts on the line while this process sets up the rest.
    const line = { argv, env: berthEnv(proc.env), cwd: proc.cwd, tty: { stdout: Boolean(proc.stdout.isTTY), stderr: Boolean(proc.stderr.isTTY) } };
    conn.write(`POST /cli HTTP/1.1\r\nHost: berth\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n${chunk(line)}`);
    let answered = false;
    let settled = false;
    let exit: number | undefined;
    let silent: NodeJS.Timeout | undefined;
    let unlisten: (() => void) | undefined;
    const done = (code: number | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(silent);
      unlisten?.();
      settle(code);
    };
    const lost = (why: string): void => {
      if (exit !== undefined) return done(exit);
      proc.stderr.write(`berth: error: lost the daemon at ${socket} while it ran the command: ${why}\n`);
      done(1);
    };
    // At once: a connection that cannot be made ends in 'error', not 'connect'.
    conn.on('error', (err: NodeJS.ErrnoException) => {
      if (settled) return;
      if (!answered) return done(undefined); // ENOENT, ECONNREFUSED (a daemon that is gone), EACCES: the caller runs the line itself
      lost(err.message);
    });
    conn.once('connect', () => {
      if (settled) return;
      // A daemon answers as soon as it takes or refuses the line (api/server.ts): one that does not is stuck, and waiting on it would hang the caller.
      const waitMs = opts.answerTimeoutMs ?? ANSWER_TIMEOUT_MS;
      silent = setTimeout(() => {
        conn.destroy();
        proc.stderr.write(`berth: error: the daemon at ${socket} took the command but did not answer within ${waitMs / 1000} s; it may be stuck (its log may say why; stop it and the command runs without it)\n`);
        done(1);
      }, waitMs);
      unlisten = proc.onSignal((signal) => {
        if (!settled) conn.write(chunk({ signal }));
      });
      const text = new StringDecoder('utf8');
      let pending = '';
      const frames = (bytes: Buffer): boolean => {
        pending += text.write(bytes);
        for (let i = pending.indexOf('\n'); i !== -1; i = pending.indexOf('\n')) {
          const raw = pending.slice(0, i);
          pending = pending.slice(i + 1);
          if (!raw) continue;
          let f: Frame;
          try {
            f = JSON.parse(raw) as Frame;
          } catch {
            proc.stderr.write(`berth: error: the daemon at ${socket} sent something that is not a frame: ${raw.slice(0, 200)}\n`);
            continue;
          }
          if (f.stdout !== undefined) proc.stdout.write(f.stdout);
          if (f.stderr !== undefined) proc.stderr.write(f.stderr);
          if (f.exit !== undefined) exit = f.exit;
          if (f.signal !== undefined) {
            // The daemon finishes the command as it does for a client that went away (a foreground run stops its container).
            conn.destroy();
            done(128 + f.signal);
            proc.die(f.signal);
            return false;
          }
        }
        return true;
      };
      const reply = new ResponseReader(
        (status) => {
          answered = true;
          clearTimeout(silent);
          if (status === 200) return true;
          // Refused (409) or an older daemon without /cli (404): nothing ran; the caller runs the line.
          conn.destroy();
          done(undefined);
          return false;
        },
        frames,
      );
      conn.on('data', (b: Buffer) => {
        if (settled) return;
        try {
          reply.push(b);
        } catch (err) {
          conn.destroy();
          if (!answered) return done(undefined);
          return lost((err as Error).message);
        }
        if (!reply.complete || settled) return;
        // The reply is whole: end the request body, and the exchange.
        conn.end('0\r\n\r\n');
        if (exit === undefined) proc.stderr.write(`berth: error: the daemon at ${socket} ended the command without an exit code\n`);
        done(exit ?? 1);
      });
      conn.on('end', () => {
        if (settled) return;
        if (reply.endOfStream()) {
          if (exit === undefined) proc.stderr.write(`berth: error: the daemon at ${socket} ended the command without an exit code\n`);
          return done(exit ?? 1);
        }
        // Closed before an answer: a daemon going away (nothing ran); after one: the command's fate is unknown.
        if (!answered) return done(undefined);
        lost('the connection closed in the middle of the reply');
      });
    });
  });
}

/** How long a daemon may take to answer a line (it answers before running it). */
const ANSWER_TIMEOUT_MS = 30_000;

/** Response heads (and chunk-size lines) longer than this are not the daemon's. */
const MAX_HEAD_BYTES = 64 * 1024;

/**
 * An HTTP/1.1 response read from its bytes as they come: `head` gets the
 * status once the head is in (false stops the reading), `body` the body's
 * bytes, whatever its framing (chunked, Content-Length, or to the close);
 * false from it stops too. Throws on what is not HTTP.
 */
export class ResponseReader {
  private state: 'head' | 'size' | 'data' | 'crlf' | 'trailer' | 'done' | 'stopped' = 'head';
  private framing: 'chunked' | 'length' | 'close' = 'close';
  /** Bytes left in the current chunk (chunked) or in the body (length). */
  private left = 0;
  /** The head, or a framing line, so far. */
  private partial: Buffer = Buffer.alloc(0);

  constructor(
    private readonly head: (status: number) => boolean,
    private readonly body: (bytes: Buffer) => boolean,
  ) {}

  /** The body was read to its end (by its framing). */
  get complete(): boolean {
    return this.state === 'done';
  }

  /** The connection ended: whether that completes the reply (only a body that runs to the close). */
  endOfStream(): boolean {
    if (this.state === 'data' && this.framing === 'close') this.state = 'done';
    return this.complete;
  }

  push(bytes: Buffer): void {
    let buf = bytes;
    if (this.state === 'head') {
      const all = this.partial.length ? Buffer.concat([this.partial, buf]) : buf;
      const end = all.indexOf('\r\n\r\n');
      if (end === -1) {
        if (all.length > MAX_HEAD_BYTES) throw new Error(`a response head longer than ${MAX_HEAD_BYTES} bytes`);
        this.partial = all;
        return;
      }
      this.partial = Buffer.alloc(0);
      buf = all.subarray(end + 4);
      if (!this.readHead(all.subarray(0, end).toString('latin1'))) {
        this.state = 'stopped';
        return;
      }
    }
    while (buf.length > 0 && this.state !== 'done' && this.state !== 'stopped') {
      if (this.state === 'data') {
        const n = Math.min(this.left, buf.length);
        const more = this.body(buf.subarray(0, n));
        this.left -= n;
        buf = buf.subarray(n);
        if (!more) this.state = 'stopped';
        else if (this.left === 0) this.state = this.framing === 'chunked' ? 'crlf' : 'done';
        continue;
      }
      // size, crlf and trailer read a line.
      const nl = buf.indexOf(0x0a);
      if (nl === -1) {
        this.partial = Buffer.concat([this.partial, buf]);
        if (this.partial.length > MAX_HEAD_BYTES) throw new Error('a chunk framing line that does not end');
        return;
      }
      const line = Buffer.concat([this.partial, buf.subarray(0, nl)]).toString('latin1').trim();
      this.partial = Buffer.alloc(0);
      buf = buf.subarray(nl + 1);
      if (this.state === 'crlf') {
        if (line) throw new Error('a chunk longer than its size');
        this.state = 'size';
      } else if (this.state === 'size') {
        const size = /^[0-9a-fA-F]+/.exec(line);
        if (!size) throw new Error(`a chunk size that is not hexadecimal: ${JSON.stringify(line.slice(0, 40))}`);
        this.left = parseInt(size[0], 16);
        this.state = this.left === 0 ? 'trailer' : 'data';
      } else if (!line) this.state = 'done'; // the empty line after the trailers
    }
  }

  private readHead(text: string): boolean {
    const [statusLine = '', ...fields] = text.split('\r\n');
    const status = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
    if (!status) throw new Error(`not an HTTP/1.1 response: ${JSON.stringify(statusLine.slice(0, 80))}`);
    const header = (name: string): string | undefined => {
      for (const f of fields) {
        const colon = f.indexOf(':');
        if (colon > 0 && f.slice(0, colon).trim().toLowerCase() === name) return f.slice(colon + 1).trim().toLowerCase();
      }
      return undefined;
    };
    if (!this.head(Number(status[1]))) return false;
    const length = header('content-length');
    if (header('transfer-encoding')?.split(',').pop()?.trim() === 'chunked') {
      this.framing = 'chunked';
      this.state = 'size';
    } else if (length !== undefined) {
      if (!/^\d+$/.test(length)) throw new Error(`a Content-Length that is not a number: ${JSON.stringify(length)}`);
      this.framing = 'length';
      this.left = Number(length);
      this.state = this.left === 0 ? 'done' : 'data';
    } else {
      this.framing = 'close';
      this.left = Infinity;
      this.state = 'data';
    }
    return true;
  }
}

/** Calls fn with the number of SIGINT, SIGTERM or SIGHUP when this process gets one; returns a function that stops. */
export function onProcessSignal(fn: (signal: number) => void): () => void {
  const handlers = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((name) => {
    const h = (): void => fn(osConstants.signals[name]);
    process.on(name, h);
    return [name, h] as const;
  });
  return () => handlers.forEach(([name, h]) => process.off(name, h));
}

/** This process's line through the daemon when one serves it: its exit code, else undefined (nothing was printed; run it here). */
export function serveFromDaemon(argv: string[]): Promise<number | undefined> {
  const socket = remoteSocket(argv, process.env, process.cwd());
  if (socket === undefined) return Promise.resolve(undefined);
  return runRemote(argv, socket, {
    env: process.env,
    cwd: process.cwd(),
    stdout: process.stdout,
    stderr: process.stderr,
    onSignal: onProcessSignal,
    die: (signal) => process.kill(process.pid, signal),
  });
}
