/**
 * The registry client's own HTTP/1.1 (src/remotes/connection.ts), driven
 * through fetchBlob: body framings, reads into the caller's buffers,
 * keep-alive, a server closing kept-alive connections, cancel and abort, and
 * malformed responses. Raw TCP servers where the exact bytes on the wire
 * matter.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { BerthError } from '../../../src/errors.js';
import type { Descriptor } from '../../../src/oci/descriptor.js';
import { parseReference } from '../../../src/oci/reference.js';
import type { BlobBody } from '../../../src/remotes/index.js';
import { makeResolver, readAll, rejects, sha256, startServer } from './fake.js';

function desc(b: Buffer): Descriptor {
  return { mediaType: 'application/octet-stream', digest: sha256(b), size: b.length };
}

/** A TCP server that answers each request with `respond(socket, request head)`; counts connections. */
async function rawServer(respond: (socket: Socket, head: string, n: number) => void): Promise<{ host: string; connections: () => number; close(): Promise<void> }> {
  let connections = 0;
  let requests = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    let buffered = '';
    socket.on('data', (d) => {
      buffered += d.toString('latin1');
      for (let i = buffered.indexOf('\r\n\r\n'); i >= 0; i = buffered.indexOf('\r\n\r\n')) {
        const head = buffered.slice(0, i);
        buffered = buffered.slice(i + 4);
        respond(socket, head, ++requests);
      }
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    connections: () => connections,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** Reads a whole body with readInto and buffers of `size` bytes, checking each buffer is left alone once its read settled. */
async function readAllInto(body: BlobBody, size: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  const done: Buffer[] = [];
  for (;;) {
    const buf = Buffer.alloc(size);
    const n = await body.readInto(buf);
    if (n === 0) break;
    parts.push(Buffer.from(buf.subarray(0, n)));
    buf.fill(0xee); // the caller owns it again: the socket must not write here any more
    done.push(buf);
  }
  for (const b of done) assert.ok(b.every((x) => x === 0xee), 'the socket wrote into a buffer after its read settled');
  return Buffer.concat(parts);
}

function chunked(blob: Buffer, sizes: number[]): Buffer {
  const out: Buffer[] = [];
  let at = 0;
  for (let i = 0; at < blob.length; i++) {
    const n = Math.min(sizes[i % sizes.length]!, blob.length - at);
    out.push(Buffer.from(`${n.toString(16)}${i % 3 === 0 ? ';ext=1' : ''}\r\n`), blob.subarray(at, at + n), Buffer.from('\r\n'));
    at += n;
  }
  out.push(Buffer.from('0\r\nx-trailer: y\r\n\r\n'));
  return Buffer.concat(out);
}

test('bodies with Content-Length, chunked and close-delimited framing arrive intact in buffers of any size', async (t) => {
  const blob = randomBytes(700_001);
  let framing = '';
  const srv = await rawServer((socket) => {
    if (framing === 'length') {
      // Head and the first bytes in one write, the rest in pieces: the head parser must hand over what it read ahead.
      socket.write(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\ncontent-length: ${blob.length}\r\n\r\n`), blob.subarray(0, 1000)]));
      socket.write(blob.subarray(1000, 300_000));
      setTimeout(() => socket.write(blob.subarray(300_000)), 5);
    } else if (framing === 'chunked') {
      socket.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n');
      const wire = chunked(blob, [1, 70_000, 3, 65_536, 12_345]);
      // Dribble the framing so chunk-size lines split across reads.
      for (let at = 0; at < wire.length; at += 40_003) socket.write(wire.subarray(at, at + 40_003));
    } else {
      socket.end(Buffer.concat([Buffer.from('HTTP/1.0 200 OK\r\n\r\n'), blob]));
    }
  });
  const { resolver } = makeResolver();
  t.after(() => Promise.all([srv.close(), resolver.close()]));
  const f = resolver.fetcher(parseReference(`${srv.host}/a/b:t`));
  for (framing of ['length', 'chunked', 'close']) {
    for (const size of [1000, 65_536, 1 << 20]) {
      const got = await readAllInto(await f.fetchBlob(desc(blob)), size);
      assert.equal(got.length, blob.length, `${framing}, ${size}-byte buffers`);
      assert.ok(got.equals(blob), `${framing}, ${size}-byte buffers`);
    }
    assert.ok((await readAll((await f.fetchBlob(desc(blob))).stream)).equals(blob), `${framing} as a stream`);
  }
});

test('keep-alive: blob after blob on one connection; a server closing idle connections costs no retry', async (t) => {
  const blob = randomBytes(100_000);
  let closeAfter = false;
  const srv = await rawServer((socket) => {
    socket.write(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\ncontent-length: ${blob.length}\r\n\r\n`), blob]));
    if (closeAfter) socket.end(); // no "connection: close": the client only sees the FIN
  });
  const h = makeResolver();
  t.after(() => Promise.all([srv.close(), h.resolver.close()]));
  const f = h.resolver.fetcher(parseReference(`${srv.host}/a/b:t`));
  for (let i = 0; i < 4; i++) assert.ok((await readAllInto(await f.fetchBlob(desc(blob)), 1 << 16)).equals(blob));
  assert.equal(srv.connections(), 1, 'one kept-alive connection for sequential fetches');

  closeAfter = true;
  for (let i = 0; i < 3; i++) {
    assert.ok((await readAllInto(await f.fetchBlob(desc(blob)), 1 << 16)).equals(blob));
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.deepEqual(h.sleeps, [], 'closed keep-alive connections are replaced, not retried with backoff');
  assert.equal(h.logs.filter((l) => l.msg.includes('retrying')).length, 0);
});

test('cancel mid-body closes the connection; the next fetch opens a new one and works', async (t) => {
  const blob = randomBytes(4 << 20);
  const srv = await startServer((_req, res) => {
    res.writeHead(200, { 'content-length': blob.length });
    res.end(blob);
  });
  const { resolver } = makeResolver();
  t.after(() => Promise.all([srv.close(), resolver.close()]));
  const f = resolver.fetcher(parseReference(`${srv.host}/a/b:t`));
  const body = await f.fetchBlob(desc(blob));
  assert.equal(await body.readInto(Buffer.alloc(10_000)), 10_000);
  body.cancel();
  await rejects(body.readInto(Buffer.alloc(10)));
  assert.ok((await readAllInto(await f.fetchBlob(desc(blob)), 1 << 20)).equals(blob));
});

test('a body read hands over a partly filled buffer at the first bytes after PARTIAL_READ_MS, not only when full (a slow link keeps what it brought)', async (t) => {
  const blob = randomBytes(1 << 20);
  let restSent = false;
  const srv = await startServer((_req, res) => {
    res.writeHead(200, { 'content-length': blob.length });
    res.write(blob.subarray(0, 500));
    setTimeout(() => res.write(blob.subarray(500, 1000)), 300);
    setTimeout(() => {
      restSent = true;
      res.end(blob.subarray(1000));
    }, 1500);
  });
  const { resolver } = makeResolver();
  t.after(() => Promise.all([srv.close(), resolver.close()]));
  const body = await resolver.fetcher(parseReference(`${srv.host}/a/b:t`)).fetchBlob(desc(blob));
  const buf = Buffer.alloc(1 << 20);
  const n = await body.readInto(buf);
  assert.equal(restSent, false, 'the read waited for the rest of the body');
  assert.equal(n, 1000);
  assert.ok(buf.subarray(0, n).equals(blob.subarray(0, 1000)));
  const rest = Buffer.alloc(blob.length);
  let got = 0;
  for (let m; (m = await body.readInto(rest.subarray(got))) > 0; ) got += m;
  assert.equal(got, blob.length - 1000);
  assert.ok(rest.subarray(0, got).equals(blob.subarray(1000)));
});

test('a body trickling in, read into two alternating buffers: every byte in order, many reads handed over part-full', async (t) => {
  const blob = randomBytes(600_000);
  const srv = await startServer((_req, res) => {
    res.writeHead(200, { 'content-length': blob.length });
    let at = 0;
    const tick = setInterval(() => {
      res.write(blob.subarray(at, (at += 16_384)));
      if (at >= blob.length) {
        clearInterval(tick);
        res.end();
      }
    }, 8);
  });
  const { resolver } = makeResolver();
  t.after(() => Promise.all([srv.close(), resolver.close()]));
  const body = await resolver.fetcher(parseReference(`${srv.host}/a/b:t`)).fetchBlob(desc(blob));
  const bufs = [Buffer.alloc(256 << 10), Buffer.alloc(256 << 10)];
  const parts: Buffer[] = [];
  let partFull = 0;
  for (let i = 0; ; i ^= 1) {
    const n = await body.readInto(bufs[i]!);
    if (n === 0) break;
    if (n < bufs[i]!.length) partFull++;
    parts.push(Buffer.from(bufs[i]!.subarray(0, n)));
    bufs[i]!.fill(0xee); // reused: the connection must never write into it again unasked
  }
  assert.ok(Buffer.concat(parts).equals(blob), 'the bytes read are the body');
  assert.ok(partFull >= 3, `only ${partFull} reads were handed over part-full`);
});

test('an abort signal cancels a body mid-way: CANCELLED', async (t) => {
  const blob = randomBytes(1 << 20);
  const srv = await startServer((_req, res) => {
    res.writeHead(200, { 'content-length': blob.length });
    res.write(blob.subarray(0, 1000)); // and then nothing
  });
  const { resolver } = makeResolver();
  t.after(() => Promise.all([srv.close(), resolver.close()]));
  const ac = new AbortController();
  const body = await resolver.fetcher(parseReference(`${srv.host}/a/b:t`)).fetchBlob(desc(blob), { signal: ac.signal });
  const reading = body.readInto(Buffer.alloc(1 << 20));
  setTimeout(() => ac.abort(), 20);
  // The bytes that came before the abort are delivered, then the read fails.
  const first = await reading.catch((e: unknown) => e);
  const err = typeof first === 'number' ? await rejects(body.readInto(Buffer.alloc(1 << 20))) : first;
  assert.ok(err instanceof BerthError && err.code === 'CANCELLED', String(err));
});

test('malformed responses are UNAVAILABLE, naming the host', async (t) => {
  const responses = ['HTTP/9 200 OK\r\n\r\n', 'HTTP/1.1 200 OK\r\ncontent-length: 12x\r\n\r\n', 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n', `HTTP/1.1 200 OK\r\nx: ${'a'.repeat(60_000)}\r\n\r\n`];
  const srv = await rawServer((socket, _head, n) => socket.end(responses[(n - 1) % responses.length]!));
  const { resolver } = makeResolver({ retry: { attempts: 1 } });
  t.after(() => Promise.all([srv.close(), resolver.close()]));
  const f = resolver.fetcher(parseReference(`${srv.host}/a/b:t`));
  for (const r of responses) {
    const err = await rejects(f.fetchBlob(desc(Buffer.from('x'))).then((b) => readAll(b.stream)));
    assert.ok(err instanceof BerthError && err.code === 'UNAVAILABLE', `${JSON.stringify(r.slice(0, 40))}: ${String(err)}`);
    assert.ok(err.message.includes(srv.host), err.message);
  }
});

test('interim 1xx responses are skipped', async (t) => {
  const blob = Buffer.from('hello');
  const srv = await rawServer((socket) => {
    socket.write(`HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: ${blob.length}\r\n\r\n`);
    socket.write(blob);
  });
  const { resolver } = makeResolver();
  t.after(() => Promise.all([srv.close(), resolver.close()]));
  const body = await resolver.fetcher(parseReference(`${srv.host}/a/b:t`)).fetchBlob(desc(blob));
  assert.ok((await readAllInto(body, 100)).equals(blob));
});
