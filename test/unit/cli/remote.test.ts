/**
 * The thin client (cli/remote.ts): which commands go to the daemon and which
 * socket it looks for, without berth's parser; its HTTP/1.1 by hand, read
 * byte by byte and against node:http's server on a unix socket.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { globalOptionSpec } from '../../../src/cli/args.js';
import { COMMAND_NAMES, commandOf, REMOTE_COMMANDS, remoteSocket, ResponseReader, runRemote, VALUED, type RemoteProcess } from '../../../src/cli/remote.js';
import { withTempDir } from '../../helpers/tmp.js';
import { commandNames } from '../../../src/cli/run.js';

describe('remoteSocket', () => {
  test('knows which global options take a value, as the CLI does', () => {
    const valued = Object.entries(globalOptionSpec).filter(([, o]) => o.type === 'string').flatMap(([name, o]) => [`--${name}`, ...(o.short ? [`-${o.short}`] : [])]);
    assert.deepEqual([...VALUED].sort(), valued.sort());
  });

  test('the commands sent are the container commands that need no terminal of the client, and events', () => {
    assert.deepEqual([...REMOTE_COMMANDS].sort(), ['create', 'events', 'logs', 'ps', 'rm', 'run', 'start', 'stop']);
  });

  test('container commands find --state DIR, --state=DIR, BERTH_STATE, or /run/berth', () => {
    assert.equal(remoteSocket(['run', '--rm', 'img'], {}, '/'), '/run/berth/api.sock');
    assert.equal(remoteSocket(['ps'], { BERTH_STATE: '/s' }, '/'), '/s/api.sock');
    assert.equal(remoteSocket(['--state', '/x', 'ps'], { BERTH_STATE: '/s' }, '/'), '/x/api.sock');
    assert.equal(remoteSocket(['logs', 'c', '--state=/y'], {}, '/'), '/y/api.sock');
    assert.equal(remoteSocket(['-o', 'json', 'events', '-f'], {}, '/'), '/run/berth/api.sock');
    assert.equal(remoteSocket(['--state', 'rel', 'stop', 'c'], {}, '/home/u'), '/home/u/rel/api.sock', 'relative to the cwd');
    // Global options' values are not command words.
    assert.equal(remoteSocket(['--root', 'run', '-o', 'json', '--log-level', 'debug', 'ps'], {}, '/'), '/run/berth/api.sock');
    assert.equal(remoteSocket(['--root', 'ps', 'image', 'ls'], {}, '/'), undefined);
  });

  test('other commands, and anything after --, stay local', () => {
    for (const argv of [['exec', 'c', '--', 'sh'], ['daemon'], ['apply', '-f', 'd'], ['image', 'pull', 'x'], ['status'], [], ['--help'], ['--', 'run']]) {
      assert.equal(remoteSocket(argv, {}, '/'), undefined, argv.join(' '));
    }
    assert.equal(remoteSocket(['run', 'img', '--', 'sh', '--state', '/nope'], {}, '/'), '/run/berth/api.sock');
  });
});

describe('commandOf (names the code cache of a line, bin.cts)', () => {
  test('knows every command of the CLI, and no other', () => {
    assert.deepEqual([...COMMAND_NAMES].sort(), commandNames().sort());
  });

  test('the command words of a line, past global options and their values; none for a line naming no command', () => {
    assert.equal(commandOf(['plan', '-f', 'd']), 'plan');
    assert.equal(commandOf(['--root', '/r', '-o', 'json', 'image', 'pull', 'busybox']), 'image pull');
    assert.equal(commandOf(['rm', '-f', 'web']), 'rm', 'a container name is not part of it');
    assert.equal(commandOf(['run', '--name', 'x', 'img', '--', 'sh']), 'run');
    for (const argv of [[], ['--help'], ['image'], ['imgae', 'ls'], ['--root', 'plan'], ['--', 'plan']]) assert.equal(commandOf(argv), undefined, argv.join(' '));
  });
});

/** Reads `bytes` fed in pieces of `sizes` (cycled): the status, the body, and whether it completed. */
function readInPieces(bytes: Buffer, sizes: number[], end = false): { status?: number; body: string; complete: boolean } {
  const out: { status?: number; body: string; complete: boolean } = { body: '', complete: false };
  const parts: Buffer[] = [];
  const r = new ResponseReader(
    (status) => ((out.status = status), true),
    (b) => (parts.push(Buffer.from(b)), true),
  );
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const n = sizes[i % sizes.length]!;
    r.push(bytes.subarray(at, at + n));
    at += n;
  }
  out.complete = end ? r.endOfStream() : r.complete;
  out.body = Buffer.concat(parts).toString('utf8');
  return out;
}

describe('ResponseReader', () => {
  const chunked = Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n' + '7\r\n{"a":1}\r\n' + 'B;ext=1\r\n\n{"b":"é"}\r\n' + '0\r\nX-Trailer: t\r\n\r\n');

  test('a chunked body, whole or split at every byte (extensions and trailers skipped)', () => {
    for (const sizes of [[chunked.length], [1], [2], [3], [7], [1, 5, 2]]) {
      assert.deepEqual(readInPieces(chunked, sizes), { status: 200, body: '{"a":1}\n{"b":"é"}', complete: true }, `pieces of ${sizes.join(',')}`);
    }
  });

  test('a Content-Length body, an empty one, and one that runs to the close', () => {
    const sized = Buffer.from('HTTP/1.1 409 Conflict\r\ncontent-length: 5\r\n\r\nhello');
    assert.deepEqual(readInPieces(sized, [1]), { status: 409, body: 'hello', complete: true });
    assert.deepEqual(readInPieces(Buffer.from('HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n'), [4]), { status: 204, body: '', complete: true });
    const toClose = Buffer.from('HTTP/1.0 200 OK\r\n\r\nall of it');
    assert.deepEqual(readInPieces(toClose, [3]), { status: 200, body: 'all of it', complete: false }, 'not complete before the close');
    assert.deepEqual(readInPieces(toClose, [3], true), { status: 200, body: 'all of it', complete: true });
    assert.equal(readInPieces(chunked.subarray(0, chunked.length - 9), [5], true).complete, false, 'a chunked body cut short is not complete at the close');
  });

  test('head or body answering false stops the reading', () => {
    let body = 0;
    const r = new ResponseReader(
      () => false,
      () => ((body += 1), true),
    );
    r.push(chunked);
    assert.equal(body, 0);
    assert.equal(r.complete, false);
  });

  test('what is not HTTP throws, naming the problem', () => {
    const feed = (text: string): void => new ResponseReader(() => true, () => true).push(Buffer.from(text));
    assert.throws(() => feed('SSH-2.0-OpenSSH\r\n\r\n'), /not an HTTP\/1.1 response: "SSH-2.0-OpenSSH"/);
    assert.throws(() => feed('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n'), /chunk size that is not hexadecimal: "zz"/);
    assert.throws(() => feed('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n'), /a chunk longer than its size/);
    assert.throws(() => feed('HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n'), /Content-Length that is not a number/);
    assert.throws(() => feed('HTTP/1.1 200 OK\r\nX: ' + 'y'.repeat(70_000)), /response head longer than 65536 bytes/);
  });
});

/** A RemoteProcess that records what the client printed, signals it can be sent, and how it died. */
function fakeProcess(env: Record<string, string> = {}): RemoteProcess & { out: string; err: string; died?: number; signal(n: number): void } {
  let handler: ((n: number) => void) | undefined;
  const p = {
    env,
    cwd: '/work',
    out: '',
    err: '',
    died: undefined as number | undefined,
    stdout: { write: (s: string) => (p.out += s) },
    stderr: { write: (s: string) => (p.err += s) },
    onSignal(fn: (n: number) => void) {
      handler = fn;
      return () => (handler = undefined);
    },
    die: (n: number) => (p.died = n),
    signal: (n: number) => handler?.(n),
  };
  return p;
}

/** Runs the client against node:http's server on a socket in a temp dir, whose handler plays the daemon. */
async function withDaemon<T>(handler: (req: IncomingMessage, res: ServerResponse) => void, fn: (socket: string) => Promise<T>): Promise<T> {
  return withTempDir('berth-remote', async (dir) => {
    const socket = join(dir, 'api.sock');
    const server = createServer(handler);
    await new Promise<void>((resolve) => server.listen(socket, resolve));
    try {
      return await fn(socket);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
}

/** The request body's lines as they arrive, to `onLine`. */
function lines(req: IncomingMessage, onLine: (value: unknown) => void): void {
  let buf = '';
  req.setEncoding('utf8');
  req.on('data', (s: string) => {
    buf += s;
    for (let i = buf.indexOf('\n'); i !== -1; i = buf.indexOf('\n')) {
      onLine(JSON.parse(buf.slice(0, i)));
      buf = buf.slice(i + 1);
    }
  });
}

describe('runRemote (the client\'s exchange with the daemon)', () => {
  test('sends the line, cwd and berth\'s variables only; prints the frames as they come, however split; exits with the code', async () => {
    const proc = fakeProcess({ BERTH_ROOT: '/r', PATH: '/bin', SECRET_TOKEN: 'x', NODE_OPTIONS: '--inspect' });
    let got: unknown;
    let bodyEnded!: Promise<void>;
    const code = await withDaemon(
      (req, res) => {
        bodyEnded = new Promise((resolve) => req.on('end', resolve));
        lines(req, (v) => {
          got ??= v;
          res.writeHead(200, { 'content-type': 'application/x-ndjson' });
          // A frame split inside a two-byte character, and across writes.
          const frames = Buffer.from(JSON.stringify({ stdout: 'héllo\n' }) + '\n' + JSON.stringify({ stderr: 'warn\n' }) + '\n');
          const cut = frames.indexOf(0xc3) + 1;
          res.write(frames.subarray(0, cut));
          setTimeout(() => {
            res.write(frames.subarray(cut));
            res.end(JSON.stringify({ exit: 7 }) + '\n');
          }, 20);
        });
      },
      // The client ends its request body once the reply is whole: the daemon's reading of signals ends with it.
      async (socket) => [await runRemote(['run', 'img'], socket, proc), await bodyEnded][0],
    );
    assert.equal(code, 7);
    assert.equal(proc.out, 'héllo\n');
    assert.equal(proc.err, 'warn\n');
    assert.deepEqual(got, { argv: ['run', 'img'], env: { BERTH_ROOT: '/r', PATH: '/bin' }, cwd: '/work', tty: { stdout: false, stderr: false } });
  });

  test('a signal the client gets is a line of the request; a signal frame ends it by that signal', async () => {
    const p = fakeProcess();
    const seen: unknown[] = [];
    const code = await withDaemon(
      (req, res) => {
        lines(req, (v) => {
          seen.push(v);
          if (seen.length === 1) {
            res.writeHead(200);
            res.write(JSON.stringify({ stdout: 'running\n' }) + '\n', () => p.signal(2));
          } else res.end(JSON.stringify({ signal: (v as { signal: number }).signal }) + '\n');
        });
      },
      (socket) => runRemote(['logs', '-f', 'c'], socket, p),
    );
    assert.deepEqual(seen[1], { signal: 2 });
    assert.equal(code, 130);
    assert.equal(p.died, 2);
    assert.equal(p.out, 'running\n');
  });

  test('no daemon, a refusal (409) or an endpoint it lacks (404): undefined, and nothing printed', async () => {
    const p = fakeProcess();
    await withTempDir('berth-remote', async (dir) => {
      assert.equal(await runRemote(['ps'], join(dir, 'api.sock'), p), undefined, 'no socket');
    });
    for (const status of [409, 404]) {
      const code = await withDaemon(
        (_req, res) => {
          res.writeHead(status, { 'content-type': 'application/json' });
          res.end('{"message":"not mine"}\n');
        },
        (socket) => runRemote(['ps'], socket, p),
      );
      assert.equal(code, undefined, String(status));
    }
    assert.equal(p.out + p.err, '');
  });

  test('a daemon that takes the connection but never answers: exit 1 after the wait, saying it may be stuck', async () => {
    const p = fakeProcess();
    const code = await withDaemon(
      () => {}, // takes the request, never answers
      (socket) => runRemote(['ps'], socket, p, { answerTimeoutMs: 150 }),
    );
    assert.equal(code, 1);
    assert.match(p.err, /^berth: error: the daemon at \/.*api\.sock took the command but did not answer within 0\.15 s; it may be stuck/);
  });

  test('a daemon that goes away in the middle, or ends without an exit code: exit 1 and a message that says so', async () => {
    const p = fakeProcess();
    const cut = await withDaemon(
      (req, res) => {
        lines(req, () => {
          res.writeHead(200);
          res.write(JSON.stringify({ stdout: 'partial\n' }) + '\n', () => res.socket?.destroy());
        });
      },
      (socket) => runRemote(['run', 'img'], socket, p),
    );
    assert.equal(cut, 1);
    assert.equal(p.out, 'partial\n');
    assert.match(p.err, /^berth: error: lost the daemon at \/.*api\.sock while it ran the command: /);

    const q = fakeProcess();
    const noExit = await withDaemon(
      (req, res) => lines(req, () => res.end(JSON.stringify({ stdout: 'x' }) + '\nnot json\n')),
      (socket) => runRemote(['ps'], socket, q),
    );
    assert.equal(noExit, 1);
    assert.match(q.err, /sent something that is not a frame: not json\n.*ended the command without an exit code\n$/s);
  });
});
