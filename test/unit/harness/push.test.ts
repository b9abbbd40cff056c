import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { once } from 'node:events';
import { startRegistry, type RegistryHandle } from '../../helpers/registry.js';
import { startFaultProxy, type FaultProxy } from '../../helpers/faultproxy.js';
import { pushBlob, pushBlobFile, pushManifest, parseChallengeParams } from '../../helpers/push.js';
import { tempDir } from '../../helpers/tmp.js';
import { sha256 } from '../../../src/oci/index.js';

describe('push helpers against a bearer registry behind the fault proxy', () => {
  let reg: RegistryHandle;
  let proxy: FaultProxy;
  before(async () => {
    reg = await startRegistry({ auth: 'bearer' });
    proxy = await startFaultProxy(reg.host);
  });
  after(async () => {
    await proxy?.stop();
    await reg?.stop();
  });

  test('pushBlobFile streams a file with its Content-Length and the registry stores the right bytes', async () => {
    const dir = await tempDir('berth-push-test');
    try {
      const path = join(dir.path, 'big.bin');
      const hash = createHash('sha256');
      const out = createWriteStream(path);
      for (let i = 0; i < 24; i++) {
        const chunk = randomBytes(1024 * 1024);
        hash.update(chunk);
        if (!out.write(chunk)) await once(out, 'drain');
      }
      out.end();
      await once(out, 'finish');
      const digest = `sha256:${hash.digest('hex')}`;
      const size = (await stat(path)).size;

      await pushBlobFile(proxy.url, 'push/big', { digest, path, size }, reg.auth);
      const put = proxy.requests.find((r) => r.method === 'PUT' && r.path.includes(`digest=${encodeURIComponent(digest)}`));
      assert.ok(put, 'the PUT went through the proxy');
      assert.equal(put.headers['content-length'], String(size));
      assert.equal(put.status, 201);
      assert.match(String(put.headers.authorization), /^Bearer /);

      // read it back by hand with a fresh token
      const res = await fetch(`${reg.url}/v2/push/big/blobs/${digest}`);
      await res.arrayBuffer();
      const p = parseChallengeParams((res.headers.get('www-authenticate') ?? '').slice(7));
      const tok = await fetch(`${p.realm}?service=${p.service}&scope=${p.scope}`, {
        headers: { authorization: `Basic ${Buffer.from(`${reg.auth!.username}:${reg.auth!.password}`).toString('base64')}` },
      });
      const { token } = (await tok.json()) as { token: string };
      const blob = await fetch(`${reg.url}/v2/push/big/blobs/${digest}`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(blob.status, 200);
      assert.equal(sha256(Buffer.from(await blob.arrayBuffer())), digest);
    } finally {
      await dir.cleanup();
    }
  });

  test('pushBlob skips a blob the registry already has (HEAD 200, no upload)', async () => {
    const data = Buffer.from('hello berth');
    const blob = { digest: sha256(data), data };
    await pushBlob(proxy.url, 'push/small', blob, reg.auth);
    const start = proxy.requests.length;
    await pushBlob(proxy.url, 'push/small', blob, reg.auth);
    assert.deepEqual(proxy.requests.slice(start).map((r) => `${r.method} ${r.status}`), ['HEAD 401', 'HEAD 200']);
  });

  test('pushBlob rejects a digest that does not match the data (the registry checks it)', async () => {
    const data = Buffer.from('abc');
    await assert.rejects(pushBlob(proxy.url, 'push/small', { digest: sha256('other'), data }, reg.auth), /HTTP 400/);
  });

  test('pushManifest without credentials fails clearly on an auth registry', async () => {
    await assert.rejects(pushManifest(proxy.url, 'push/small', 'x', 'application/vnd.oci.image.manifest.v1+json', Buffer.from('{}')), /no credentials/);
  });
});

test('parseChallengeParams handles quoted commas and unquoted values', () => {
  assert.deepEqual(parseChallengeParams(' realm="http://a/token",service=reg,scope="repository:a/b:pull,push"'), {
    realm: 'http://a/token',
    service: 'reg',
    scope: 'repository:a/b:pull,push',
  });
});

test('tempDir makes a 0700 directory under os.tmpdir() and cleanup removes it', async () => {
  const d = await tempDir('berth-tmp-test');
  assert.ok(d.path.startsWith(tmpdir()));
  assert.equal((await stat(d.path)).mode & 0o777, 0o700);
  await d.cleanup();
  await assert.rejects(access(d.path));
});
