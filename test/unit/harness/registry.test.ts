import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { access } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { startRegistry, type RegistryHandle } from '../../helpers/registry.js';
import { pushImage, pushManifest, parseChallengeParams } from '../../helpers/push.js';
import { busyboxImage, multiPlatformIndex, type FixtureImage, type FixtureIndex } from '../../fixtures/images.js';
import { ManifestAccept } from '../../../src/oci/index.js';

function basicHeader(u: string, p: string): string {
  return `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;
}

/** Fetches a token by hand, the way the distribution token spec describes, from a Bearer challenge. */
async function bearerFor(challenge: string, creds: { username: string; password: string }): Promise<string> {
  assert.match(challenge, /^Bearer /);
  const p = parseChallengeParams(challenge.slice(7));
  assert.ok(p.realm, 'challenge has a realm');
  const url = new URL(p.realm);
  url.searchParams.set('service', p.service ?? '');
  if (p.scope) url.searchParams.set('scope', p.scope);
  const res = await fetch(url, { headers: { authorization: basicHeader(creds.username, creds.password) } });
  assert.equal(res.status, 200);
  const body = (await res.json()) as { token: string; access_token: string; expires_in: number; issued_at: string };
  assert.equal(body.token, body.access_token);
  assert.equal(typeof body.expires_in, 'number');
  return `Bearer ${body.token}`;
}

/** GET with manual auth: try anonymously, answer the challenge, retry. */
async function getWithAuth(reg: RegistryHandle, path: string, headers: Record<string, string> = {}): Promise<Response> {
  const url = `${reg.url}${path}`;
  const first = await fetch(url, { headers });
  if (first.status !== 401) return first;
  await first.arrayBuffer();
  assert.ok(reg.auth, 'registry demanded auth but the handle has no credentials');
  const challenge = first.headers.get('www-authenticate') ?? '';
  const authorization = challenge.startsWith('Bearer ') ? await bearerFor(challenge, reg.auth) : basicHeader(reg.auth.username, reg.auth.password);
  return fetch(url, { headers: { ...headers, authorization } });
}

async function assertManifest(reg: RegistryHandle, repo: string, ref: string, want: FixtureImage | FixtureIndex): Promise<void> {
  const res = await getWithAuth(reg, `/v2/${repo}/manifests/${ref}`, { accept: ManifestAccept.join(', ') });
  assert.equal(res.status, 200);
  const body = Buffer.from(await res.arrayBuffer());
  assert.equal(`sha256:${createHash('sha256').update(body).digest('hex')}`, want.digest);
  assert.equal(res.headers.get('docker-content-digest'), want.digest);
  assert.equal(res.headers.get('content-type'), want.mediaType);
}

for (const mode of ['none', 'basic', 'bearer'] as const) {
  describe(`registry with auth=${mode}`, () => {
    let reg: RegistryHandle;
    let image: FixtureImage;
    let index: FixtureIndex;

    before(async () => {
      [reg, image, index] = await Promise.all([startRegistry({ auth: mode }), busyboxImage({ extraLayers: 1 }), multiPlatformIndex()]);
    });
    after(() => reg?.stop());

    test('answers /v2/ on 127.0.0.1 with the expected auth', async () => {
      assert.match(reg.host, /^127\.0\.0\.1:\d+$/);
      assert.equal(reg.url, `http://${reg.host}`);
      const res = await fetch(`${reg.url}/v2/`);
      await res.arrayBuffer();
      assert.equal(res.status, mode === 'none' ? 200 : 401);
      assert.equal(reg.auth === undefined, mode === 'none');
    });

    test('pushImage then GET returns the same digests (image and index, tag and digest)', async () => {
      await pushImage(reg.url, 'test/busybox', 'latest', image, reg.auth);
      await pushImage(reg.url, 'test/multi', 'v1', index, reg.auth);
      await assertManifest(reg, 'test/busybox', 'latest', image);
      await assertManifest(reg, 'test/busybox', image.digest, image);
      await assertManifest(reg, 'test/multi', 'v1', index);
      for (const child of index.images) await assertManifest(reg, 'test/multi', child.digest, child);
      const layer = image.layers[0]!;
      const blob = await getWithAuth(reg, `/v2/test/busybox/blobs/${layer.digest}`);
      assert.equal(blob.status, 200);
      assert.ok(Buffer.from(await blob.arrayBuffer()).equals(layer.data));
      // storage really lives in the handle's dataDir
      await access(`${reg.dataDir}/docker/registry/v2/repositories/test/busybox`);
    });

    if (mode === 'basic') {
      test('rejects wrong credentials with 401, and an upload with them fails', async () => {
        const res = await fetch(`${reg.url}/v2/`, { headers: { authorization: basicHeader(reg.auth!.username, 'wrong') } });
        await res.arrayBuffer();
        assert.equal(res.status, 401);
        assert.match(res.headers.get('www-authenticate') ?? '', /^Basic realm=/);
        await assert.rejects(
          pushManifest(reg.url, 'test/busybox', 'x', image.mediaType, image.manifest, { username: reg.auth!.username, password: 'wrong' }),
          /HTTP 401/,
        );
        const ok = await fetch(`${reg.url}/v2/`, { headers: { authorization: basicHeader(reg.auth!.username, reg.auth!.password) } });
        await ok.arrayBuffer();
        assert.equal(ok.status, 200);
      });
    }

    if (mode === 'bearer') {
      test('anonymous GET /v2/ gets a Bearer challenge naming realm and service', async () => {
        const res = await fetch(`${reg.url}/v2/`);
        await res.arrayBuffer();
        assert.equal(res.status, 401);
        const challenge = res.headers.get('www-authenticate') ?? '';
        assert.match(challenge, /^Bearer realm="[^"]+",service="[^"]+"/);
        const p = parseChallengeParams(challenge.slice(7));
        assert.equal(p.realm, `${reg.tokenServer!.url}/token`);
      });

      test('token server: anonymous and wrong credentials get 401, issued tokens are counted and requests recorded', async () => {
        const ts = reg.tokenServer!;
        const before = ts.issued();
        const anon = await fetch(`${ts.url}/token?service=berth-test-registry&scope=repository:test/busybox:pull`);
        await anon.arrayBuffer();
        assert.equal(anon.status, 401);
        const wrong = await fetch(`${ts.url}/token?service=berth-test-registry&scope=repository:test/busybox:pull`, {
          headers: { authorization: basicHeader(reg.auth!.username, 'nope') },
        });
        await wrong.arrayBuffer();
        assert.equal(wrong.status, 401);
        assert.equal(ts.issued(), before);

        const res = await getWithAuth(reg, `/v2/test/busybox/manifests/latest`, { accept: image.mediaType });
        await res.arrayBuffer();
        assert.equal(res.status, 200);
        assert.equal(ts.issued(), before + 1);
        const last = ts.requests.at(-1)!;
        assert.equal(last.query.scope, 'repository:test/busybox:pull');
        assert.equal(last.query.service, 'berth-test-registry');
        assert.match(last.authorization ?? '', /^Basic /);
      });

      test('a token for one repository does not open another (the registry checks the access claim)', async () => {
        const res = await fetch(`${reg.url}/v2/test/multi/manifests/v1`);
        await res.arrayBuffer();
        const auth = await bearerFor(
          `Bearer realm="${reg.tokenServer!.url}/token",service="berth-test-registry",scope="repository:test/busybox:pull"`,
          reg.auth!,
        );
        const denied = await fetch(`${reg.url}/v2/test/multi/manifests/v1`, { headers: { authorization: auth, accept: index.mediaType } });
        await denied.arrayBuffer();
        assert.equal(denied.status, 401);
        assert.match(denied.headers.get('www-authenticate') ?? '', /insufficient_scope/);
      });

      test('token server also takes the OAuth2 password grant by POST (as containerd tries first)', async () => {
        const ts = reg.tokenServer!;
        const form = (password: string): RequestInit => ({
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({
            grant_type: 'password', username: reg.auth!.username, password, service: 'berth-test-registry',
            scope: 'repository:test/busybox:pull', client_id: 'berth-test',
          }).toString(),
        });
        const wrong = await fetch(`${ts.url}/token`, form('nope'));
        await wrong.arrayBuffer();
        assert.equal(wrong.status, 401);
        const ok = await fetch(`${ts.url}/token`, form(reg.auth!.password));
        assert.equal(ok.status, 200);
        const { access_token } = (await ok.json()) as { access_token: string };
        const last = ts.requests.at(-1)!;
        assert.equal(last.method, 'POST');
        assert.equal(last.query.grant_type, 'password');
        assert.equal(last.query.password, undefined, 'passwords are not recorded');
        const res = await fetch(`${reg.url}/v2/test/busybox/manifests/latest`, { headers: { authorization: `Bearer ${access_token}`, accept: image.mediaType } });
        await res.arrayBuffer();
        assert.equal(res.status, 200);
      });

      test('a forged token (wrong signature) is rejected', async () => {
        const good = await bearerFor(
          `Bearer realm="${reg.tokenServer!.url}/token",service="berth-test-registry",scope="repository:test/busybox:pull"`,
          reg.auth!,
        );
        const [h, c] = good.slice(7).split('.');
        const forged = `Bearer ${h}.${c}.${Buffer.alloc(256, 1).toString('base64url')}`;
        const res = await fetch(`${reg.url}/v2/test/busybox/manifests/latest`, { headers: { authorization: forged, accept: image.mediaType } });
        await res.arrayBuffer();
        assert.equal(res.status, 401);
      });
    }
  });
}

test('stop() kills the registry and removes its temp dir', async () => {
  const reg = await startRegistry();
  await reg.stop();
  await assert.rejects(fetch(`${reg.url}/v2/`));
  await assert.rejects(access(reg.dataDir));
  await reg.stop(); // idempotent
});

test('a test process that exits (or is sent SIGTERM) without stop() leaves no registry or temp dir behind', async () => {
  const helper = fileURLToPath(new URL('../../helpers/registry.js', import.meta.url));
  for (const ending of ['process.exit(0)', "process.kill(process.pid, 'SIGTERM')"]) {
    const script = `const { startRegistry } = await import(${JSON.stringify(helper)});
      const reg = await startRegistry({ auth: 'basic' });
      console.log(JSON.stringify({ url: reg.url, dataDir: reg.dataDir }));
      ${ending};`;
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script]).catch((err: { stdout: string }) => err);
    const { url, dataDir } = JSON.parse(stdout) as { url: string; dataDir: string };
    await new Promise((r) => setTimeout(r, 200));
    await assert.rejects(fetch(`${url}/v2/`), ending);
    await assert.rejects(access(dataDir), 'temp dir removed');
  }
});
