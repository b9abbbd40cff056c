import { test, describe, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { startRegistry, type RegistryHandle } from '../../helpers/registry.js';
import { startFaultProxy, type FaultProxy } from '../../helpers/faultproxy.js';
import { pushImage } from '../../helpers/push.js';
import { busyboxImage, type FixtureImage } from '../../fixtures/images.js';
import { sha256 } from '../../../src/oci/index.js';

describe('fault proxy', () => {
  let reg: RegistryHandle;
  let proxy: FaultProxy;
  let image: FixtureImage;
  let blobPath: string;
  let blobData: Buffer;

  before(async () => {
    [reg, image] = await Promise.all([startRegistry(), busyboxImage()]);
    proxy = await startFaultProxy(reg.host);
    const layer = image.layers[0]!;
    blobPath = `/v2/fp/busybox/blobs/${layer.digest}`;
    blobData = layer.data;
  });
  after(async () => {
    await proxy?.stop();
    await reg?.stop();
  });
  beforeEach(() => proxy.clearFaults());

  const get = (path: string, init?: RequestInit): Promise<Response> => fetch(`${proxy.url}${path}`, init);

  test('pushing through the proxy works: upload Locations name the proxy, not the upstream', async () => {
    assert.match(proxy.host, /^127\.0\.0\.1:\d+$/);
    assert.match(proxy.otherHost, /^127\.0\.0\.2:\d+$/);
    const start = proxy.requests.length;
    await pushImage(proxy.url, 'fp/busybox', 'latest', image);
    const seen = proxy.requests.slice(start);
    assert.ok(seen.some((r) => r.method === 'POST' && r.path === '/v2/fp/busybox/blobs/uploads/' && r.status === 202));
    assert.ok(seen.some((r) => r.method === 'PUT' && r.path.includes('digest=') && r.status === 201), 'blob PUT went through the proxy');
    assert.ok(seen.some((r) => r.method === 'PUT' && r.path === '/v2/fp/busybox/manifests/latest' && r.status === 201));

    const post = await get('/v2/fp/busybox/blobs/uploads/', { method: 'POST' });
    await post.arrayBuffer();
    assert.ok(post.headers.get('location')?.startsWith(`${proxy.url}/v2/fp/busybox/blobs/uploads/`), post.headers.get('location') ?? '');

    const res = await get('/v2/fp/busybox/manifests/latest', { headers: { accept: image.mediaType } });
    assert.equal(res.status, 200);
    assert.equal(sha256(Buffer.from(await res.arrayBuffer())), image.digest);
  });

  test('no fault: a blob streams through unchanged', async () => {
    const res = await get(blobPath);
    assert.equal(res.status, 200);
    assert.equal(sha256(Buffer.from(await res.arrayBuffer())), image.layers[0]!.digest);
  });

  test('corrupt flips one byte (same length, different hash), once', async () => {
    proxy.addFault({ kind: 'corrupt', path: /\/blobs\// });
    const bad = Buffer.from(await (await get(blobPath)).arrayBuffer());
    assert.equal(bad.length, blobData.length);
    assert.notEqual(sha256(bad), image.layers[0]!.digest);
    const mid = Math.floor(blobData.length / 2);
    assert.equal(bad[mid], blobData[mid]! ^ 0xff);
    assert.equal(bad.subarray(0, mid).equals(blobData.subarray(0, mid)), true);
    assert.equal(proxy.requests.at(-1)?.fault, 'corrupt');

    proxy.addFault({ kind: 'corrupt', atByte: 0 });
    const bad0 = Buffer.from(await (await get(blobPath)).arrayBuffer());
    assert.equal(bad0[0], blobData[0]! ^ 0xff);

    const good = Buffer.from(await (await get(blobPath)).arrayBuffer());
    assert.equal(sha256(good), image.layers[0]!.digest, 'fault used up');
  });

  test('cut sends the headers and afterBytes, then the client sees the connection drop', async () => {
    proxy.addFault({ kind: 'cut', path: /\/blobs\//, afterBytes: 1000 });
    const res = await get(blobPath);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-length'), String(blobData.length));
    const reader = res.body!.getReader();
    let received = 0;
    await assert.rejects(async () => {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        received += value.length;
      }
    });
    assert.equal(received, 1000);

    proxy.addFault({ kind: 'cut', afterBytes: 0 });
    await assert.rejects(async () => (await get(blobPath)).arrayBuffer());
  });

  test('status answers instead of forwarding, with Retry-After, filtered by method', async () => {
    proxy.addFault({ kind: 'status', status: 429, retryAfter: 7, path: /\/manifests\// });
    const before = proxy.requests.length;
    const res = await get('/v2/fp/busybox/manifests/latest');
    assert.equal(res.status, 429);
    assert.equal(res.headers.get('retry-after'), '7');
    assert.equal(((await res.json()) as { errors: Array<{ code: string }> }).errors[0]?.code, 'TOOMANYREQUESTS');
    assert.equal(proxy.requests.at(-1)?.status, 429);
    assert.equal(proxy.requests.length, before + 1);

    proxy.addFault({ kind: 'status', status: 503, method: 'HEAD', times: 2 });
    assert.equal((await get(blobPath)).status, 200, 'GET does not match a HEAD fault');
    assert.equal((await get(blobPath, { method: 'HEAD' })).status, 503);
    assert.equal((await get(blobPath, { method: 'HEAD' })).status, 503);
    assert.equal((await get(blobPath, { method: 'HEAD' })).status, 200);
  });

  test('faults apply in order, each request taking the first match with uses left', async () => {
    proxy.addFault({ kind: 'status', status: 503, times: 2, path: /\/blobs\// });
    proxy.addFault({ kind: 'corrupt', path: /\/blobs\// });
    const got: Array<number | string> = [];
    for (let i = 0; i < 4; i++) {
      const res = await get(blobPath);
      const body = Buffer.from(await res.arrayBuffer());
      got.push(res.status === 200 ? (sha256(body) === image.layers[0]!.digest ? 'ok' : 'corrupt') : res.status);
    }
    assert.deepEqual(got, [503, 503, 'corrupt', 'ok']);
  });

  test('path filter: a manifest fault leaves blobs alone', async () => {
    proxy.addFault({ kind: 'status', status: 500, path: /\/manifests\// });
    assert.equal((await get(blobPath)).status, 200);
    assert.equal((await get('/v2/fp/busybox/manifests/latest')).status, 500);
  });

  test('redirect answers 307 to the same path on 127.0.0.2, which serves and logs it', async () => {
    proxy.addFault({ kind: 'redirect', path: /\/blobs\// });
    const manual = await get(blobPath, { redirect: 'manual', headers: { 'x-test': 'one' } });
    assert.equal(manual.status, 307);
    assert.equal(manual.headers.get('location'), `http://${proxy.otherHost}${blobPath}`);

    proxy.addFault({ kind: 'redirect', path: /\/blobs\// });
    const before = proxy.otherRequests.length;
    const followed = await get(blobPath, { headers: { 'x-test': 'two' } });
    assert.equal(followed.status, 200);
    assert.equal(sha256(Buffer.from(await followed.arrayBuffer())), image.layers[0]!.digest);
    const logged = proxy.otherRequests.slice(before);
    assert.equal(logged.length, 1);
    assert.equal(logged[0]!.method, 'GET');
    assert.equal(logged[0]!.path, blobPath);
    assert.equal(logged[0]!.headers['x-test'], 'two');
    assert.equal(logged[0]!.headers.host, proxy.otherHost);
  });

  test('ignoreRange strips Range so the upstream answers 200 with the full body', async () => {
    const ranged = await get(blobPath, { headers: { range: 'bytes=10-19' } });
    assert.equal(ranged.status, 206);
    assert.ok(Buffer.from(await ranged.arrayBuffer()).equals(blobData.subarray(10, 20)));

    proxy.addFault({ kind: 'ignoreRange' });
    const full = await get(blobPath, { headers: { range: 'bytes=10-19' } });
    assert.equal(full.status, 200);
    assert.ok(Buffer.from(await full.arrayBuffer()).equals(blobData));
    assert.equal(proxy.requests.at(-1)?.headers.range, 'bytes=10-19', 'the record keeps what the client sent');
  });

  test('delay holds the request for ms', async () => {
    proxy.addFault({ kind: 'delay', ms: 300 });
    const t0 = Date.now();
    const res = await get('/v2/');
    await res.arrayBuffer();
    assert.equal(res.status, 200);
    assert.ok(Date.now() - t0 >= 290, `took ${Date.now() - t0} ms`);
    const t1 = Date.now();
    await (await get('/v2/')).arrayBuffer();
    assert.ok(Date.now() - t1 < 290);
  });

  test('clearFaults drops pending faults', async () => {
    proxy.addFault({ kind: 'status', status: 503, times: 5 });
    proxy.clearFaults();
    assert.equal((await get('/v2/')).status, 200);
  });
});
