import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError } from '../../../src/errors.js';
import { parseReference } from '../../../src/oci/reference.js';
import { defaultRegistryHosts, isLoopbackHost, loadRegistryHosts, parseRegistryHosts } from '../../../src/remotes/index.js';
import { tempDir } from '../../helpers/tmp.js';
import { deadPort, makeResolver, manifestBytes, OCI_MANIFEST, rejects, repoHandler, sha256, startServer } from './fake.js';

test('plain HTTP only for loopback without config; everything else is HTTPS', () => {
  const d = defaultRegistryHosts();
  const one = (domain: string) => {
    const eps = d.endpoints(domain);
    assert.equal(eps.length, 1);
    return eps[0];
  };
  assert.deepEqual(one('docker.io'), { scheme: 'https', host: 'registry-1.docker.io', isMirror: false });
  assert.equal(one('registry.example:5000')?.scheme, 'https');
  assert.equal(one('10.0.0.5:5000')?.scheme, 'https');
  assert.equal(one('127.0.0.1:5000')?.scheme, 'http');
  assert.equal(one('127.1.2.3:5000')?.scheme, 'http');
  assert.equal(one('localhost:5000')?.scheme, 'http');
  assert.equal(one('[::1]:5000')?.scheme, 'http');
  assert.equal(one('localhost.example.com')?.scheme, 'https');
  assert.ok(isLoopbackHost('localhost') && !isLoopbackHost('128.0.0.1') && !isLoopbackHost('[::2]:5000'));
});

test('a missing registries.yaml means the defaults; an empty one too', async () => {
  const dir = await tempDir('berth-hosts');
  try {
    const h = await loadRegistryHosts(join(dir.path, 'absent.yaml'));
    assert.deepEqual(h.endpoints('127.0.0.1:5000'), [{ scheme: 'http', host: '127.0.0.1:5000', isMirror: false }]);
    await writeFile(join(dir.path, 'empty.yaml'), '');
    const e = await loadRegistryHosts(join(dir.path, 'empty.yaml'));
    assert.equal(e.endpoints('docker.io')[0]?.host, 'registry-1.docker.io');
  } finally {
    await dir.cleanup();
  }
});

test('registries.yaml: mirrors first, then the registry; configs give auth, TLS, rewrites, path prefixes', async () => {
  const dir = await tempDir('berth-hosts');
  try {
    await writeFile(join(dir.path, 'ca.pem'), 'CA-PEM');
    await writeFile(join(dir.path, 'client.pem'), 'CERT-PEM');
    await writeFile(join(dir.path, 'client.key'), 'KEY-PEM');
    const file = join(dir.path, 'registries.yaml');
    await writeFile(
      file,
      [
        'mirrors:',
        '  docker.io:',
        '    endpoint:',
        '      - "http://127.0.0.1:5000"',
        '      - "https://mirror.example/cache/v2"',
        '    rewrite:',
        '      "^library/(.*)": "hub/$1"',
        '  registry.local:5000:',
        '    endpoint: ["http://registry.local:5000"]',
        '  "*":',
        '    endpoint: ["https://catchall.example"]',
        'configs:',
        '  "mirror.example":',
        '    auth: { username: m, password: p }',
        '    tls:',
        '      ca_file: ca.pem',
        '      cert_file: client.pem',
        `      key_file: ${join(dir.path, 'client.key')}`,
        '  "127.0.0.1:5000":',
        `    auth: { auth: ${Buffer.from('u:p:with:colons').toString('base64')} }`,
        '  docker.io:',
        '    tls: { insecure_skip_verify: true }',
      ].join('\n'),
    );
    const h = await loadRegistryHosts(file);
    const hub = h.endpoints('docker.io');
    assert.deepEqual(
      hub.map((e) => [e.scheme, e.host, e.pathPrefix ?? '', e.isMirror]),
      [
        ['http', '127.0.0.1:5000', '', true],
        ['https', 'mirror.example', '/cache', true],
        ['https', 'registry-1.docker.io', '', false],
      ],
    );
    assert.deepEqual(hub[0]?.auth, { username: 'u', password: 'p:with:colons' });
    assert.deepEqual(hub[1]?.auth, { username: 'm', password: 'p' });
    assert.deepEqual(hub[1]?.ca?.map(String), ['CA-PEM']);
    assert.equal(String(hub[1]?.cert), 'CERT-PEM');
    assert.equal(String(hub[1]?.key), 'KEY-PEM');
    assert.equal(hub[0]?.rewrites?.[0]?.replacement, 'hub/$1');
    assert.equal(hub[2]?.rewrites, undefined, 'rewrites apply to mirrors only');
    assert.equal(hub[2]?.insecureSkipVerify, true, 'a config under the domain name applies to its default endpoint');

    // An endpoint that is the registry itself, as http://, is how a plain-HTTP registry is declared.
    assert.deepEqual(h.endpoints('registry.local:5000').map((e) => [e.scheme, e.host, e.isMirror]), [['http', 'registry.local:5000', false]]);
    assert.deepEqual(h.endpoints('quay.io').map((e) => [e.scheme, e.host, e.isMirror]), [
      ['https', 'catchall.example', true],
      ['https', 'quay.io', false],
    ]);
  } finally {
    await dir.cleanup();
  }
});

test('a loopback registry with TLS config is contacted over HTTPS', async () => {
  const dir = await tempDir('berth-hosts');
  try {
    await writeFile(join(dir.path, 'ca.pem'), 'x');
    const h = await parseRegistryHosts('configs:\n  "127.0.0.1:5443":\n    tls: { ca_file: ca.pem }\n', join(dir.path, 'r.yaml'));
    assert.equal(h.endpoints('127.0.0.1:5443')[0]?.scheme, 'https');
  } finally {
    await dir.cleanup();
  }
});

test('bad registries.yaml is INVALID_ARGUMENT naming the file and the problem', async () => {
  const file = '/etc/berth/registries.yaml';
  const cases: Array<[string, RegExp]> = [
    ['mirrors: [1, 2', /YAML error at line 1/],
    ['mirrors:\n  a: 1\n  a: 2\n', /YAML error at line 3/],
    ['- a\n- b\n', /the document must be a map/],
    ['mirror:\n  docker.io: {}\n', /unknown top-level key "mirror"/],
    ['mirrors:\n  docker.io:\n    endpoint: "http://x"\n', /mirrors\["docker.io"\]\.endpoint must be a list/],
    ['mirrors:\n  docker.io:\n    endpoint: ["ftp://x"]\n', /scheme must be http or https/],
    ['mirrors:\n  docker.io:\n    endpoint: ["http://[bad"]\n', /not a valid URL/],
    ['mirrors:\n  docker.io:\n    rewrite: { "(": "x" }\n', /not a valid regular expression/],
    ['configs:\n  h:\n    tls: { ca_file: /nonexistent/ca.pem }\n', /ca_file \/nonexistent\/ca\.pem: ENOENT/],
    ['configs:\n  h:\n    tls: { insecure_skip_verify: "yes" }\n', /insecure_skip_verify must be true or false/],
    ['configs:\n  h:\n    auth: { username: u }\n', /needs both username and password/],
    ['configs:\n  h: 5\n', /configs\["h"\] must be a map/],
  ];
  for (const [text, re] of cases) {
    const err = await rejects(parseRegistryHosts(text, file));
    assert.ok(err instanceof BerthError && err.code === 'INVALID_ARGUMENT', `${text}: ${String(err)}`);
    assert.ok(err.message.includes(file), err.message);
    assert.match(err.message, re);
  }
  const dir = await tempDir('berth-hosts');
  try {
    await writeFile(join(dir.path, 'c.pem'), 'x');
    const err = await rejects(parseRegistryHosts('configs:\n  h:\n    tls: { cert_file: c.pem }\n', join(dir.path, 'r.yaml')));
    assert.ok(err instanceof BerthError && /both cert_file and key_file/.test(err.message), String(err));
  } finally {
    await dir.cleanup();
  }
});

test('mirrors are tried in order; unreachable and 404 mirrors fall back, the registry comes last', async (t) => {
  const body = manifestBytes();
  const repo = { manifests: new Map([['1', { body, mediaType: OCI_MANIFEST }]]), blobs: new Map([[sha256('blob'), Buffer.from('blob')]]) };
  const dead = await deadPort();
  const empty = await startServer(repoHandler({ manifests: new Map(), blobs: new Map() }));
  const upstream = await startServer(repoHandler(repo));
  const hosts = await parseRegistryHosts(`mirrors:\n  "${upstream.host}":\n    endpoint: ["http://127.0.0.1:${dead}", "${empty.url}"]\n`, '/x/registries.yaml');
  const h = makeResolver({ hosts });
  t.after(() => Promise.all([empty.close(), upstream.close(), h.resolver.close()]));

  const ref = parseReference(`${upstream.host}/team/app:1`);
  const r = await h.resolver.resolve(ref);
  assert.equal(r.host, upstream.host);
  assert.equal(r.descriptor.digest, sha256(body));
  assert.equal(empty.requests.length, 1);
  assert.deepEqual(h.sleeps, [], 'a failing mirror is asked once, without backoff');
  const fallbacks = h.logs.filter((l) => l.msg.includes('trying the next')).map((l) => [l.fields.host, l.fields.code]);
  assert.deepEqual(fallbacks, [
    [`127.0.0.1:${dead}`, 'UNAVAILABLE'],
    [empty.host, 'NOT_FOUND'],
  ]);

  const blob = await h.resolver.fetcher(ref).fetchBlob({ mediaType: 'x', digest: sha256('blob'), size: 4 });
  blob.stream.resume();
  assert.equal(upstream.requests.at(-1)?.url, `/v2/team/app/blobs/${sha256('blob')}`);
});

test('a mirror that has the image answers, and the registry is not contacted; rewrites apply', async (t) => {
  const body = manifestBytes();
  const mirror = await startServer(repoHandler({ manifests: new Map([['1', { body, mediaType: OCI_MANIFEST }]]), blobs: new Map() }));
  const port = await deadPort();
  const hosts = await parseRegistryHosts(`mirrors:\n  "127.0.0.1:${port}":\n    endpoint: ["${mirror.url}"]\n    rewrite: { "^team/(.*)$": "cache/team/$1" }\n`, '/x/registries.yaml');
  const h = makeResolver({ hosts });
  t.after(() => Promise.all([mirror.close(), h.resolver.close()]));
  const r = await h.resolver.resolve(parseReference(`127.0.0.1:${port}/team/app:1`));
  assert.equal(r.host, mirror.host);
  assert.equal(r.name, `127.0.0.1:${port}/team/app:1`);
  assert.equal(mirror.requests[0]?.url, '/v2/cache/team/app/manifests/1');
});

test('an error other than UNAVAILABLE/NOT_FOUND/RATE_LIMITED from a mirror is final', async (t) => {
  const mirror = await startServer((_req, res) => {
    res.writeHead(403);
    res.end();
  });
  const upstream = await startServer(repoHandler({ manifests: new Map([['1', { body: manifestBytes(), mediaType: OCI_MANIFEST }]]), blobs: new Map() }));
  const hosts = await parseRegistryHosts(`mirrors:\n  "${upstream.host}":\n    endpoint: ["${mirror.url}"]\n`, '/x/registries.yaml');
  const h = makeResolver({ hosts });
  t.after(() => Promise.all([mirror.close(), upstream.close(), h.resolver.close()]));
  const err = await rejects(h.resolver.resolve(parseReference(`${upstream.host}/team/app:1`)));
  assert.ok(err instanceof BerthError && err.code === 'FORBIDDEN', String(err));
  assert.equal(upstream.requests.length, 0);
});
