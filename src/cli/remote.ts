import { request } from 'node:http';
import { constants as osConstants } from 'node:os';
import { join, resolve } from 'node:path';

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
 * but its output streams and signals. Not exec (it hands the client's
 * terminal descriptors to the process), nor the rest.
 */
export const REMOTE_COMMANDS: ReadonlySet<string> = new Set(['run', 'create', 'start', 'stop', 'rm', 'ps', 'logs']);

/** Every command of the CLI (cli/run.ts; a test keeps the two equal), for naming a command before the CLI is loaded. */
export const COMMAND_NAMES: ReadonlySet<string> = new Set([
  'apply', 'bundle create', 'content verify', 'create', 'daemon', 'events', 'exec', 'explain',
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

/**
 * Runs the line through the daemon on `socket`. Resolves to the command's
 * exit code, or undefined when no daemon took it (no socket, a stale one,
 * or a daemon that does not run this line: other --root, an older daemon),
 * in which case the caller runs it itself and nothing was printed.
 */
export function runRemote(argv: string[], socket: string, proc: RemoteProcess): Promise<number | undefined> {
  return new Promise((settle) => {
    let answered = false;
    let settled = false;
    let exit: number | undefined;
    const done = (code: number | undefined): void => {
      if (settled) return;
      settled = true;
      unlisten();
      settle(code);
    };
    // agent: false: one connection for this line, closed with it (a kept-alive socket would hold the process open).
    const req = request({ socketPath: socket, method: 'POST', path: '/cli', agent: false, headers: { 'content-type': 'application/x-ndjson' } }, (res) => {
      answered = true;
      if (res.statusCode !== 200) {
        // Refused (409) or an older daemon without /cli (404): nothing ran; the caller runs the line.
        res.resume();
        req.destroy();
        done(undefined);
        return;
      }
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buf += chunk;
        for (let i = buf.indexOf('\n'); i !== -1; i = buf.indexOf('\n')) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (!line) continue;
          let f: { stdout?: string; stderr?: string; exit?: number; signal?: number };
          try {
            f = JSON.parse(line) as typeof f;
          } catch {
            proc.stderr.write(`berth: error: the daemon at ${socket} sent something that is not a frame: ${line.slice(0, 200)}\n`);
            continue;
          }
          if (f.stdout !== undefined) proc.stdout.write(f.stdout);
          if (f.stderr !== undefined) proc.stderr.write(f.stderr);
          if (f.exit !== undefined) exit = f.exit;
          if (f.signal !== undefined) {
            // The daemon finishes the command as it does for a client that went away (a foreground run stops its container).
            done(128 + f.signal);
            proc.die(f.signal);
            return;
          }
        }
      });
      res.on('end', () => {
        if (settled) return;
        req.end();
        if (exit === undefined) proc.stderr.write(`berth: error: the daemon at ${socket} ended the command without an exit code\n`);
        done(exit ?? 1);
      });
      res.on('error', () => {});
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (settled || exit !== undefined) return;
      if (!answered) return done(undefined); // ENOENT, ECONNREFUSED (a daemon that is gone), EACCES: the caller runs the line itself
      proc.stderr.write(`berth: error: lost the daemon at ${socket} while it ran the command: ${err.message}\n`);
      done(1);
    });
    const unlisten = proc.onSignal((signal) => {
      if (!settled) req.write(JSON.stringify({ signal }) + '\n');
    });
    req.write(JSON.stringify({ argv, env: berthEnv(proc.env), cwd: proc.cwd, tty: { stdout: Boolean(proc.stdout.isTTY), stderr: Boolean(proc.stderr.isTTY) } }) + '\n');
  });
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
