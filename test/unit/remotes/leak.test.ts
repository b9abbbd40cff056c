/**
 * Credentials never reach an error, a log record or an event: every failure
 * path of the registry client is driven with a distinctive password, token and
 * URL signature, and everything the client produced is searched for them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError } from '../../../src/errors.js';
import type { Descriptor } from '../../../src/oci/descriptor.js';
import { parseReference } from '../../../src/oci/reference.js';
import { DockerConfigCredentials, parseRegistryHosts, StaticCredentials } from '../../../src/remotes/index.js';
import { tempDir } from '../../helpers/tmp.js';
import { deadPort, makeResolver, manifestBytes, OCI_MANIFEST, readAll, rejects, sha256, startServer, type Harness } from './fake.js';

const USER = 'leaky-user';
const PASSWORD = 'Pw-Distinctive-7f3e9!';
const TOKEN = 'TOKEN-SECRET-b41d';
const SIGNATURE = 'SIG-SECRET-99a0';
const SECRETS = [PASSWORD, Buffer.from(`${USER}:${PASSWORD}`).toString('base64'), TOKEN, SIGNATURE, encodeURIComponent(PASSWORD)];
const BASIC = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`;
const creds = { username: USER, password: PASSWORD };

function everything(err: unknown): string {
  const parts: string[] = [];
  let e: unknown = err;
  for (let i = 0; e && i < 10; i++) {
    parts.push(String(e), (e as Error).stack ?? '');
    if (e instanceof BerthError) parts.push(JSON.stringify(e.toJSON()), JSON.stringify(e.details), e.hint ?? '');
    e = (e as { cause?: unknown }).cause;
  }
  return parts.join('\n');
}

function assertClean(what: string, text: string): void {
  for (const s of SECRETS) assert.ok(!text.includes(s), `${what} leaks ${JSON.stringify(s)}:\n${text}`);
}

test('no error path leaks a password, a Basic header, a token or a URL signature', async (t) => {
  const blob = randomBytes(200_000);
  const blobDesc: Descriptor = { mediaType: 'application/octet-stream', digest: sha256(blob), size: blob.length };
  let mode = '';
  const redirectTarget = await startServer((_req, res) => {
    res.writeHead(500);
    res.end();
  });
  const tokens = await startServer((req, res) => {
    if (mode === 'token-refused' || req.headers.authorization !== BASIC) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="tokens"' });
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token: TOKEN, expires_in: 300 }));
  });
  const reg = await startServer((req, res, url) => {
    const bearer = mode.startsWith('bearer') || mode === 'token-refused';
    const ok = bearer ? req.headers.authorization === `Bearer ${TOKEN}` && mode !== 'bearer-rejected' : req.headers.authorization === BASIC && mode !== 'basic-wrong';
    if (!ok) {
      res.writeHead(401, { 'www-authenticate': bearer ? `Bearer realm="${tokens.url}/token",service="reg"` : 'Basic realm="reg"' });
      res.end();
      return;
    }
    const isBlob = url.pathname.includes('/blobs/');
    switch (mode) {
      case 'forbidden':
        res.writeHead(403);
        return void res.end();
      case 'missing':
        res.writeHead(404);
        return void res.end();
      case 'unavailable':
        res.writeHead(503);
        return void res.end();
      case 'limited':
        res.writeHead(429, { 'retry-after': '1' });
        return void res.end();
      case 'redirect':
        res.writeHead(307, { location: `${redirectTarget.url}/b?X-Amz-Signature=${SIGNATURE}&X-Amz-Credential=${PASSWORD}` });
        return void res.end();
      case 'mismatch':
        res.writeHead(200, { 'content-type': OCI_MANIFEST, 'docker-content-digest': sha256('other') });
        return void res.end(req.method === 'HEAD' ? undefined : manifestBytes());
      case 'reset':
        if (isBlob) {
          res.writeHead(200, { 'content-length': blob.length });
          res.write(blob.subarray(0, 1000), () => setTimeout(() => req.socket.destroy(), 10));
          return;
        }
        break;
      case 'truncated':
        if (isBlob) {
          res.writeHead(200);
          return void res.end(blob.subarray(0, 1000));
        }
        break;
    }
    res.writeHead(404);
    res.end();
  });
  const dead = await deadPort();
  const dir = await tempDir('berth-leak');
  t.after(() => Promise.all([reg.close(), tokens.close(), redirectTarget.close(), dir.cleanup()]));

  const harnesses: Harness[] = [];
  const errors: Array<[string, unknown]> = [];
  const ref = parseReference(`${reg.host}/team/app:1`);
  const viaYaml = await parseRegistryHosts(`configs:\n  "${reg.host}":\n    auth: { username: ${USER}, password: "${PASSWORD}" }\n`, join(dir.path, 'registries.yaml'));
  await mkdir(join(dir.path, 'docker'));
  await writeFile(join(dir.path, 'docker', 'config.json'), JSON.stringify({ auths: { [`https://127.0.0.1:${dead}`]: { auth: Buffer.from(`${USER}:${PASSWORD}`).toString('base64') }, [reg.host]: creds } }));

  const setups = [
    () => makeResolver({ credentials: new StaticCredentials({ [reg.host]: creds }), retry: { attempts: 2 } }),
    () => makeResolver({ hosts: viaYaml, credentials: new StaticCredentials({}), retry: { attempts: 2 } }),
    () => makeResolver({ credentials: new DockerConfigCredentials(join(dir.path, 'docker')), retry: { attempts: 2 } }),
  ];
  const modes = ['basic-wrong', 'token-refused', 'bearer-rejected', 'bearer-forbidden', 'forbidden', 'missing', 'unavailable', 'limited', 'redirect', 'mismatch', 'reset', 'truncated'];
  for (const setup of setups) {
    for (const m of modes) {
      mode = m;
      const h = setup();
      harnesses.push(h);
      const f = h.resolver.fetcher(ref);
      if (m === 'reset' || m === 'truncated') {
        const body = await f.fetchBlob(blobDesc);
        errors.push([m, await rejects(readAll(body.stream))]);
      } else {
        errors.push([`${m} resolve`, await rejects(h.resolver.resolve(ref))]);
        // Blob bodies are not verified here, so a mismatching manifest is no blob error.
        if (m !== 'mismatch') errors.push([`${m} blob`, await rejects(f.fetchBlob(blobDesc))]);
        errors.push([`${m} manifest`, await rejects(f.fetchManifest({ mediaType: OCI_MANIFEST, digest: sha256('m'), size: 1 }))]);
      }
      await h.resolver.close();
    }
    const h = setup();
    harnesses.push(h);
    errors.push(['refused', await rejects(h.resolver.resolve(parseReference(`127.0.0.1:${dead}/team/app:1`)))]);
    await h.resolver.close();
  }

  // Config files holding the password, broken right where the password is.
  errors.push(['yaml syntax', await rejects(parseRegistryHosts(`configs:\n  h:\n    auth: { username: u, password: "${PASSWORD}\n`, '/r.yaml'))]);
  errors.push(['yaml shape', await rejects(parseRegistryHosts(`configs:\n  h:\n    auth: { username: [${PASSWORD}], password: ${PASSWORD} }\n`, '/r.yaml'))]);
  errors.push(['yaml url', await rejects(parseRegistryHosts(`mirrors:\n  h:\n    endpoint: ["https://${USER}:${PASSWORD}@mirror.example"]\n`, '/r.yaml'))]);
  await writeFile(join(dir.path, 'docker', 'config.json'), `{"auths": {"h": {"password": "${PASSWORD}" ,,}}}`);
  errors.push(['config.json', await rejects(new DockerConfigCredentials(join(dir.path, 'docker')).get('h'))]);

  const codes = new Set<string>();
  for (const [what, err] of errors) {
    assert.ok(err instanceof BerthError, `${what}: ${String(err)}`);
    codes.add(err.code);
    assertClean(what, everything(err));
  }
  for (const h of harnesses) {
    assertClean('logs', JSON.stringify(h.logs));
    assertClean('events', JSON.stringify(h.events));
  }
  // The sweep really went through the failure paths it claims to.
  for (const c of ['UNAUTHORIZED', 'FORBIDDEN', 'NOT_FOUND', 'UNAVAILABLE', 'RATE_LIMITED', 'DIGEST_MISMATCH', 'TRUNCATED', 'INVALID_ARGUMENT']) {
    assert.ok(codes.has(c), `no ${c} error was produced`);
  }
  assert.ok(harnesses.some((h) => h.logs.length > 0 && h.events.length > 0), 'logs and events were captured');
  assert.ok(redirectTarget.requests.length > 0 && tokens.requests.length > 0);
});
