import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BerthError } from '../../../src/errors.js';
import { parseReference } from '../../../src/oci/reference.js';
import { parseRegistryHosts, parseWWWAuthenticate, StaticCredentials } from '../../../src/remotes/index.js';
import { makeResolver, manifestBytes, OCI_MANIFEST, rejects, repoHandler, startServer, type FakeServer, type Handler } from './fake.js';

const repo = { manifests: new Map([['1', { body: manifestBytes(), mediaType: OCI_MANIFEST }]]), blobs: new Map<string, Buffer>() };
const basicOf = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

test('parseWWWAuthenticate reads Bearer and Basic challenges with quoted and bare values', () => {
  assert.deepEqual(parseWWWAuthenticate('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"'), [
    { scheme: 'bearer', params: { realm: 'https://auth.example/token', service: 'registry.example', scope: 'repository:a/b:pull' } },
  ]);
  assert.deepEqual(parseWWWAuthenticate('Basic realm="Registry Realm"'), [{ scheme: 'basic', params: { realm: 'Registry Realm' } }]);
  assert.deepEqual(parseWWWAuthenticate('Negotiate abc, Basic realm=x, bearer realm="r\\"q", error="invalid_token"'), [
    { scheme: 'basic', params: { realm: 'x' } },
    { scheme: 'bearer', params: { realm: 'r"q', error: 'invalid_token' } },
  ]);
  assert.deepEqual(parseWWWAuthenticate(undefined), []);
});

interface TokenServer extends FakeServer {
  issued: number;
}

/** A token server issuing "tok-<n>" with the given expires_in; `expect` checks each request. */
async function tokenServer(expiresIn: number | undefined, field: 'token' | 'access_token' = 'token'): Promise<TokenServer> {
  const ts = { issued: 0 } as TokenServer;
  const srv = await startServer((_req, res) => {
    ts.issued++;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ [field]: `tok-${ts.issued}`, ...(expiresIn !== undefined ? { expires_in: expiresIn } : {}) }));
  });
  return Object.assign(ts, srv, { issued: 0 });
}

/** A registry that wants "Bearer <one of valid()>" and challenges otherwise. */
function bearerRegistry(realm: () => string, valid: () => string[]): Handler {
  const inner = repoHandler(repo);
  return (req, res, url) => {
    const a = req.headers.authorization ?? '';
    if (!valid().map((t) => `Bearer ${t}`).includes(a)) {
      res.writeHead(401, { 'www-authenticate': `Bearer realm="${realm()}",service="fake-registry",scope="repository:team/app:pull,push"` });
      res.end();
      return;
    }
    return inner(req, res, url);
  };
}

test('Bearer: the token is requested with service, scope and account, then cached per host and scope', async (t) => {
  const ts = await tokenServer(300, 'access_token');
  const reg = await startServer(bearerRegistry(() => `${ts.url}/token`, () => ['tok-1']));
  const { resolver } = makeResolver({ credentials: new StaticCredentials({ [reg.host]: { username: 'bob', password: 'builder' } }) });
  t.after(() => Promise.all([reg.close(), ts.close(), resolver.close()]));
  const ref = parseReference(`${reg.host}/team/app:1`);

  await resolver.resolve(ref);
  assert.equal(ts.requests.length, 1);
  const q = new URL(ts.requests[0]?.url ?? '', 'http://x').searchParams;
  assert.equal(q.get('service'), 'fake-registry');
  assert.deepEqual(q.getAll('scope'), ['repository:team/app:pull', 'repository:team/app:pull,push']);
  assert.equal(q.get('account'), 'bob');
  assert.equal(ts.requests[0]?.headers.authorization, basicOf('bob', 'builder'));

  const before = reg.requests.length;
  await resolver.resolve(ref);
  assert.equal(ts.requests.length, 1, 'a cached token must not hit the token server');
  assert.equal(reg.requests.length, before + 1, 'a cached token is sent up front, without a 401 round trip');
  assert.equal(reg.requests.at(-1)?.headers.authorization, 'Bearer tok-1');
});

test('Bearer without credentials fetches an anonymous token', async (t) => {
  const ts = await tokenServer(undefined);
  const reg = await startServer(bearerRegistry(() => `${ts.url}/token`, () => ['tok-1']));
  const { resolver } = makeResolver();
  t.after(() => Promise.all([reg.close(), ts.close(), resolver.close()]));
  await resolver.resolve(parseReference(`${reg.host}/team/app:1`));
  assert.equal(ts.requests[0]?.headers.authorization, undefined);
  assert.equal(new URL(ts.requests[0]?.url ?? '', 'http://x').searchParams.get('account'), null);
});

test('an expired token is fetched again (injected clock)', async (t) => {
  let now = 1_000_000;
  const ts = await tokenServer(60);
  const reg = await startServer(bearerRegistry(() => `${ts.url}/token`, () => ['tok-1', 'tok-2']));
  const { resolver } = makeResolver({ now: () => now });
  t.after(() => Promise.all([reg.close(), ts.close(), resolver.close()]));
  const ref = parseReference(`${reg.host}/team/app:1`);

  await resolver.resolve(ref);
  now += 30_000;
  await resolver.resolve(ref);
  assert.equal(ts.issued, 1, 'still valid at 30 s');
  now += 31_000;
  await resolver.resolve(ref);
  assert.equal(ts.issued, 2, 'expired at 61 s');
  assert.equal(reg.requests.at(-1)?.headers.authorization, 'Bearer tok-2');
});

test('a cached token the registry rejects is dropped and replaced once', async (t) => {
  const ts = await tokenServer(3600);
  let valid = ['tok-1'];
  const reg = await startServer(bearerRegistry(() => `${ts.url}/token`, () => valid));
  const { resolver } = makeResolver();
  t.after(() => Promise.all([reg.close(), ts.close(), resolver.close()]));
  const ref = parseReference(`${reg.host}/team/app:1`);
  await resolver.resolve(ref);
  valid = ['tok-2'];
  await resolver.resolve(ref);
  assert.equal(ts.issued, 2);
});

test('a token the registry keeps rejecting is UNAUTHORIZED after one retry', async (t) => {
  const ts = await tokenServer(3600);
  const reg = await startServer(bearerRegistry(() => `${ts.url}/token`, () => []));
  const { resolver } = makeResolver();
  t.after(() => Promise.all([reg.close(), ts.close(), resolver.close()]));
  const err = await rejects(resolver.resolve(parseReference(`${reg.host}/team/app:1`)));
  assert.ok(err instanceof BerthError && err.code === 'UNAUTHORIZED', String(err));
  assert.equal(reg.requests.length, 2);
  assert.ok(err.message.includes(reg.host) && err.message.includes(`${reg.host}/team/app:1`), err.message);
});

test('a token server refusing the credentials is UNAUTHORIZED with a credentials hint', async (t) => {
  const ts = await startServer((_req, res) => {
    res.writeHead(401);
    res.end();
  });
  const reg = await startServer(bearerRegistry(() => `${ts.url}/token`, () => []));
  const { resolver } = makeResolver({ credentials: new StaticCredentials({ [reg.host]: { username: 'u', password: 'wrong' } }) });
  t.after(() => Promise.all([reg.close(), ts.close(), resolver.close()]));
  const err = await rejects(resolver.resolve(parseReference(`${reg.host}/team/app:1`)));
  assert.ok(err instanceof BerthError && err.code === 'UNAUTHORIZED', String(err));
  assert.match(err.hint ?? '', /config\.json/);
});

function basicRegistry(user: string, pass: string): Handler {
  const inner = repoHandler(repo);
  return (req, res, url) => {
    if (req.headers.authorization !== basicOf(user, pass)) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="fake"' });
      res.end();
      return;
    }
    return inner(req, res, url);
  };
}

test('Basic: credentials answer the challenge and are then sent up front', async (t) => {
  const reg = await startServer(basicRegistry('carol', 's3cret'));
  const { resolver } = makeResolver({ credentials: new StaticCredentials({ [reg.host]: { username: 'carol', password: 's3cret' } }) });
  t.after(() => Promise.all([reg.close(), resolver.close()]));
  const ref = parseReference(`${reg.host}/team/app:1`);
  await resolver.resolve(ref);
  assert.deepEqual(reg.requests.map((q) => q.headers.authorization), [undefined, basicOf('carol', 's3cret')]);
  await resolver.resolve(ref);
  assert.equal(reg.requests.length, 3);
  assert.equal(reg.requests[2]?.headers.authorization, basicOf('carol', 's3cret'));
});

test('wrong or missing Basic credentials are UNAUTHORIZED naming host and ref, with a hint', async (t) => {
  const reg = await startServer(basicRegistry('carol', 's3cret'));
  t.after(() => reg.close());
  for (const credentials of [new StaticCredentials({ [reg.host]: { username: 'carol', password: 'nope' } }), new StaticCredentials({})]) {
    const { resolver } = makeResolver({ credentials });
    const err = await rejects(resolver.resolve(parseReference(`${reg.host}/team/app:1`)));
    await resolver.close();
    assert.ok(err instanceof BerthError && err.code === 'UNAUTHORIZED', String(err));
    assert.ok(err.message.includes(reg.host) && err.message.includes('team/app:1'), err.message);
    assert.match(err.hint ?? '', /config\.json|registries\.yaml/);
  }
});

test('403 is FORBIDDEN', async (t) => {
  const reg = await startServer((_req, res) => {
    res.writeHead(403, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ errors: [{ code: 'DENIED', message: 'requested access to the resource is denied' }] }));
  });
  const { resolver } = makeResolver();
  t.after(() => Promise.all([reg.close(), resolver.close()]));
  const err = await rejects(resolver.resolve(parseReference(`${reg.host}/team/app:1`)));
  assert.ok(err instanceof BerthError && err.code === 'FORBIDDEN', String(err));
  assert.ok(err.message.includes(reg.host));
  // HEAD has no body; a GET's error body gives the registry's codes.
  const blob = { mediaType: 'application/octet-stream', digest: `sha256:${'a'.repeat(64)}` as never, size: 1 };
  const err2 = await rejects(resolver.fetcher(parseReference(`${reg.host}/team/app:1`)).fetchBlob(blob));
  assert.ok(err2 instanceof BerthError && err2.code === 'FORBIDDEN', String(err2));
  assert.deepEqual(err2.details.registryErrors, ['DENIED']);
});

test('registry config auth wins over the credential store', async (t) => {
  const reg = await startServer(basicRegistry('yaml-user', 'yaml-pass'));
  const hosts = await parseRegistryHosts(`configs:\n  "${reg.host}":\n    auth: { username: yaml-user, password: yaml-pass }\n`, '/tmp/registries.yaml');
  const { resolver } = makeResolver({ hosts, credentials: new StaticCredentials({ [reg.host]: { username: 'docker-user', password: 'docker-pass' } }) });
  t.after(() => Promise.all([reg.close(), resolver.close()]));
  await resolver.resolve(parseReference(`${reg.host}/team/app:1`));
  assert.equal(reg.requests.at(-1)?.headers.authorization, basicOf('yaml-user', 'yaml-pass'));
});
