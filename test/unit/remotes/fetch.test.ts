import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { BerthError } from '../../../src/errors.js';
import { MAX_MANIFEST_BYTES, type Descriptor } from '../../../src/oci/descriptor.js';
import { parseReference } from '../../../src/oci/reference.js';
import { StaticCredentials } from '../../../src/remotes/index.js';
import { makeResolver, manifestBytes, OCI_MANIFEST, readAll, rejects, repoHandler, sha256, startServer } from './fake.js';

const LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';

function blobDesc(b: Buffer): Descriptor {
  return { mediaType: LAYER, digest: sha256(b), size: b.length };
}

test('fetchManifest returns verified bytes and asks with the descriptor media type first', async (t) => {
  const body = manifestBytes();
  const srv = await startServer(repoHandler({ manifests: new Map([['t', { body, mediaType: OCI_MANIFEST }]]), blobs: new Map() }));
  const { resolver } = makeResolver();
  t.after(() => Promise.all([srv.close(), resolver.close()]));

  const got = await resolver.fetcher(parseReference(`${srv.host}/a/b:t`)).fetchManifest({ mediaType: OCI_MANIFEST, digest: sha256(body), size: body.length });
  assert.deepEqual(got, body);
  assert.equal(srv.requests[0]?.url, `/v2/a/b/manifests/${sha256(body)}`);
  assert.ok(String(srv.requests[0]?.headers.accept).startsWith(OCI_MANIFEST));
});

test('fetchManifest: wrong bytes are DIGEST_MISMATCH, wrong length SIZE_MISMATCH, oversize TOO_LARGE without a request', async (t) => {
  const body = manifestBytes();
  let served: Buffer = Buffer.alloc(body.length, 0x20);
  const srv = await startServer((_req, res) => {
    res.writeHead(200, { 'content-type': OCI_MANIFEST, 'content-length': served.length });
    res.end(served);
  });
  const { resolver } = makeResolver();
  t.after(() => Promise.all([srv.close(), resolver.close()]));
  const f = resolver.fetcher(parseReference(`${srv.host}/a/b:t`));
  const desc = { mediaType: OCI_MANIFEST, digest: sha256(body), size: body.length };

  const e1 = await rejects(f.fetchManifest(desc));
  assert.ok(e1 instanceof BerthError && e1.code === 'DIGEST_MISMATCH', String(e1));
  assert.equal(e1.details.expected, sha256(body));
  assert.equal(e1.details.found, sha256(served));

  served = Buffer.concat([body, Buffer.from('  ')]);
  const e2 = await rejects(f.fetchManifest(desc));
  assert.ok(e2 instanceof BerthError && e2.code === 'SIZE_MISMATCH', String(e2));

  served = body.subarray(0, 10);
  const e3 = await rejects(f.fetchManifest(desc));
  assert.ok(e3 instanceof BerthError && e3.code === 'SIZE_MISMATCH', String(e3));

  const before = srv.requests.length;
  const e4 = await rejects(f.fetchManifest({ ...desc, size: MAX_MANIFEST_BYTES + 1 }));
  assert.ok(e4 instanceof BerthError && e4.code === 'TOO_LARGE', String(e4));
  assert.equal(srv.requests.length, before);
});

test('fetchBlob streams raw bytes; Range with 206 honours the offset', async (t) => {
  const blob = randomBytes(300_000);
  const srv = await startServer(repoHandler({ manifests: new Map(), blobs: new Map([[sha256(blob), blob]]) }));
  const { resolver } = makeResolver();
  t.after(() => Promise.all([srv.close(), resolver.close()]));
  const f = resolver.fetcher(parseReference(`${srv.host}/a/b:t`));

  const whole = await f.fetchBlob(blobDesc(blob));
  assert.equal(whole.offset, 0);
  assert.deepEqual(await readAll(whole.stream), blob);
  assert.equal(srv.requests[0]?.headers.range, undefined);

  const part = await f.fetchBlob(blobDesc(blob), { offset: 123_456 });
  assert.equal(part.offset, 123_456);
  assert.deepEqual(await readAll(part.stream), blob.subarray(123_456));
  assert.equal(srv.requests[1]?.headers.range, 'bytes=123456-');
  assert.equal(srv.requests[1]?.url, `/v2/a/b/blobs/${sha256(blob)}`);
});

test('fetchBlob: a server that ignores Range (200) gives offset 0 and the whole blob', async (t) => {
  const blob = randomBytes(5000);
  const srv = await startServer((_req, res) => {
    res.writeHead(200, { 'content-length': blob.length });
    res.end(blob);
  });
  const { resolver } = makeResolver();
  t.after(() => Promise.all([srv.close(), resolver.close()]));
  const body = await resolver.fetcher(parseReference(`${srv.host}/a/b:t`)).fetchBlob(blobDesc(blob), { offset: 100 });
  assert.equal(body.offset, 0);
  assert.deepEqual(await readAll(body.stream), blob);
  assert.equal(srv.requests[0]?.headers.range, 'bytes=100-');
});

test('fetchBlob does not ask for compression and passes gzip bytes through untouched', async (t) => {
  const gz = Buffer.from('1f8b08000000000000034b4c4a0600c241243503000000', 'hex');
  const srv = await startServer((_req, res) => {
    res.writeHead(200, { 'content-length': gz.length, 'content-encoding': 'gzip' });
    res.end(gz);
  });
  const { resolver } = makeResolver();
  t.after(() => Promise.all([srv.close(), resolver.close()]));
  const body = await resolver.fetcher(parseReference(`${srv.host}/a/b:t`)).fetchBlob(blobDesc(gz));
  assert.deepEqual(await readAll(body.stream), gz);
  assert.equal(srv.requests[0]?.headers['accept-encoding'], 'identity');
});

test('a connection reset mid-blob errors the stream with UNAVAILABLE naming host and digest', async (t) => {
  const blob = randomBytes(1 << 20);
  const srv = await startServer((req, res) => {
    res.writeHead(200, { 'content-length': blob.length });
    res.write(blob.subarray(0, 64 * 1024), () => setTimeout(() => req.socket.destroy(), 20));
  });
  const { resolver } = makeResolver();
  t.after(() => Promise.all([srv.close(), resolver.close()]));
  const body = await resolver.fetcher(parseReference(`${srv.host}/a/b:t`)).fetchBlob(blobDesc(blob));
  const err = await rejects(readAll(body.stream));
  assert.ok(err instanceof BerthError && err.code === 'UNAVAILABLE', String(err));
  assert.ok(err.message.includes(srv.host), err.message);
  assert.ok(err.message.includes(sha256(blob)), err.message);
  assert.ok(typeof err.details.received === 'number' && err.details.received >= 64 * 1024 && err.details.received < blob.length);
});

test('a blob body that ends short of its size is TRUNCATED', async (t) => {
  const blob = randomBytes(1000);
  const srv = await startServer((_req, res) => {
    res.writeHead(200); // chunked: no Content-Length, so the descriptor's size is the expectation
    res.end(blob.subarray(0, 100));
  });
  const { resolver } = makeResolver();
  t.after(() => Promise.all([srv.close(), resolver.close()]));
  const body = await resolver.fetcher(parseReference(`${srv.host}/a/b:t`)).fetchBlob(blobDesc(blob));
  const err = await rejects(readAll(body.stream));
  assert.ok(err instanceof BerthError && err.code === 'TRUNCATED', String(err));
  assert.ok(err.message.includes(sha256(blob)));
  assert.equal(err.details.received, 100);
});

test('an unknown blob is NOT_FOUND', async (t) => {
  const srv = await startServer(repoHandler({ manifests: new Map(), blobs: new Map() }));
  const { resolver } = makeResolver();
  t.after(() => Promise.all([srv.close(), resolver.close()]));
  const blob = Buffer.from('x');
  const err = await rejects(resolver.fetcher(parseReference(`${srv.host}/a/b:t`)).fetchBlob(blobDesc(blob)));
  assert.ok(err instanceof BerthError && err.code === 'NOT_FOUND', String(err));
  assert.ok(err.message.includes(sha256(blob)));
  assert.deepEqual(err.details.registryErrors, ['BLOB_UNKNOWN']);
});

test('redirects: Authorization goes to the same origin only, never to another host or a signed URL', async (t) => {
  const blob = randomBytes(2048);
  const creds = { username: 'alice', password: 'wonderland' };
  const basic = `Basic ${Buffer.from('alice:wonderland').toString('base64')}`;
  const storage = await startServer((_req, res) => {
    res.writeHead(200, { 'content-length': blob.length });
    res.end(blob);
  });
  let target = '';
  const reg = await startServer((req, res, url) => {
    if (req.headers.authorization !== basic && !url.pathname.startsWith('/storage')) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="reg"' });
      res.end();
      return;
    }
    if (url.pathname.startsWith('/v2/')) {
      res.writeHead(307, { location: target });
      res.end();
      return;
    }
    res.writeHead(200, { 'content-length': blob.length });
    res.end(blob);
  });
  const { resolver } = makeResolver({ credentials: new StaticCredentials({ [reg.host]: creds }) });
  t.after(() => Promise.all([reg.close(), storage.close(), resolver.close()]));
  const f = resolver.fetcher(parseReference(`${reg.host}/a/b:t`));

  target = `${storage.url}/bucket/blob?X-Amz-Expires=60`;
  assert.deepEqual(await readAll((await f.fetchBlob(blobDesc(blob))).stream), blob);
  assert.equal(storage.requests.length, 1);
  assert.equal(storage.requests[0]?.headers.authorization, undefined, 'credentials leaked to another host');

  target = '/storage/blob';
  const n = reg.requests.length;
  assert.deepEqual(await readAll((await f.fetchBlob(blobDesc(blob))).stream), blob);
  const sameHost = reg.requests.slice(n).find((q) => q.url === '/storage/blob');
  assert.equal(sameHost?.headers.authorization, basic, 'same-origin redirect should keep Authorization');

  target = '/storage/blob?X-Amz-Signature=abc&X-Amz-Credential=k';
  const m = reg.requests.length;
  assert.deepEqual(await readAll((await f.fetchBlob(blobDesc(blob))).stream), blob);
  const signed = reg.requests.slice(m).find((q) => q.url.startsWith('/storage/blob?'));
  assert.ok(signed);
  assert.equal(signed.headers.authorization, undefined, 'a signed URL carries its own authorization');
});

test('more than five redirects fail', async (t) => {
  const srv = await startServer((_req, res) => {
    res.writeHead(302, { location: '/again' });
    res.end();
  });
  const { resolver } = makeResolver();
  t.after(() => Promise.all([srv.close(), resolver.close()]));
  const err = await rejects(resolver.fetcher(parseReference(`${srv.host}/a/b:t`)).fetchBlob(blobDesc(Buffer.from('x'))));
  assert.ok(err instanceof BerthError && err.code === 'UNAVAILABLE', String(err));
  assert.match(err.message, /redirects/);
  assert.equal(srv.requests.length, 6);
});
