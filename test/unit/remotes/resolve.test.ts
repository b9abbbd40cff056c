import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BerthError } from '../../../src/errors.js';
import { ManifestAccept, MediaType } from '../../../src/oci/mediatype.js';
import { MAX_MANIFEST_BYTES } from '../../../src/oci/descriptor.js';
import { parseReference } from '../../../src/oci/reference.js';
import { makeResolver, manifestBytes, OCI_MANIFEST, OCI_INDEX, rejects, repoHandler, sha256, startServer } from './fake.js';

function repoWith(tag: string, body: Buffer, mediaType = OCI_MANIFEST) {
  return { manifests: new Map([[tag, { body, mediaType }]]), blobs: new Map<string, Buffer>() };
}

test('resolve by tag uses HEAD with the full Accept list and Docker-Content-Digest', async (t) => {
  const body = manifestBytes();
  const srv = await startServer(repoHandler(repoWith('1.0', body)));
  const { resolver } = makeResolver();
  t.after(() => Promise.all([srv.close(), resolver.close()]));

  const r = await resolver.resolve(parseReference(`${srv.host}/team/app:1.0`));
  assert.deepEqual(r.descriptor, { mediaType: OCI_MANIFEST, digest: sha256(body), size: body.length });
  assert.equal(r.host, srv.host);
  assert.equal(r.name, `${srv.host}/team/app:1.0`);
  assert.deepEqual(srv.requests.map((q) => `${q.method} ${q.url}`), ['HEAD /v2/team/app/manifests/1.0']);
  const accept = String(srv.requests[0]?.headers.accept);
  for (const mt of ManifestAccept) assert.ok(accept.includes(mt), `Accept lacks ${mt}: ${accept}`);
  assert.equal(srv.requests[0]?.headers['accept-encoding'], 'identity');
});

test('resolve falls back to GET when HEAD has no Docker-Content-Digest, and hashes the body', async (t) => {
  const body = Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [] }));
  // No Content-Type the client recognises on GET either: the document's shape decides.
  const srv = await startServer(repoHandler(repoWith('2', body, 'application/json'), { headDigest: false }));
  const { resolver } = makeResolver();
  t.after(() => Promise.all([srv.close(), resolver.close()]));

  const r = await resolver.resolve(parseReference(`${srv.host}/team/app:2`));
  assert.deepEqual(r.descriptor, { mediaType: OCI_INDEX, digest: sha256(body), size: body.length });
  assert.deepEqual(srv.requests.map((q) => q.method), ['HEAD', 'GET']);
});

test('resolve falls back to GET when HEAD is refused (405)', async (t) => {
  const body = manifestBytes();
  const inner = repoHandler(repoWith('v1', body));
  const srv = await startServer((req, res, url) => {
    if (req.method === 'HEAD') {
      res.statusCode = 405;
      res.end();
      return;
    }
    return inner(req, res, url);
  });
  const { resolver } = makeResolver();
  t.after(() => Promise.all([srv.close(), resolver.close()]));

  const r = await resolver.resolve(parseReference(`${srv.host}/team/app:v1`));
  assert.equal(r.descriptor.digest, sha256(body));
  assert.deepEqual(srv.requests.map((q) => q.method), ['HEAD', 'GET']);
});

test('resolve by digest asks for the digest and keeps it', async (t) => {
  const body = manifestBytes('d');
  const srv = await startServer(repoHandler(repoWith('x', body)));
  const { resolver } = makeResolver();
  t.after(() => Promise.all([srv.close(), resolver.close()]));

  const r = await resolver.resolve(parseReference(`${srv.host}/team/app@${sha256(body)}`));
  assert.equal(r.descriptor.digest, sha256(body));
  assert.equal(srv.requests[0]?.url, `/v2/team/app/manifests/${sha256(body)}`);
});

test('schema1 manifests are refused with UNSUPPORTED naming the problem', async (t) => {
  for (const ct of [MediaType.dockerSchema1, MediaType.dockerSchema1Signed]) {
    const body = Buffer.from(JSON.stringify({ schemaVersion: 1, name: 'team/app', tag: 'old', fsLayers: [] }));
    for (const headAllowed of [true, false]) {
      const inner = repoHandler(repoWith('old', body, ct));
      const srv = await startServer((req, res, url) => {
        if (req.method === 'HEAD' && !headAllowed) {
          res.writeHead(405);
          res.end();
          return;
        }
        return inner(req, res, url);
      });
      const { resolver } = makeResolver();
      const err = await rejects(resolver.resolve(parseReference(`${srv.host}/team/app:old`)));
      await Promise.all([srv.close(), resolver.close()]);
      assert.deepEqual(srv.requests.map((q) => q.method), headAllowed ? ['HEAD'] : ['HEAD', 'GET']);
      assert.ok(err instanceof BerthError && err.code === 'UNSUPPORTED', String(err));
      assert.match(err.message, /schema1/);
      assert.match(err.message, new RegExp(srv.host.replace(/\./g, '\\.')));
      assert.ok(err.hint && /re-push/.test(err.hint));
    }
  }
  t.diagnostic('schema1 refused for both media types, via HEAD and via GET');
});

test('an unknown manifest is NOT_FOUND naming host and ref, with a hint about the tag', async (t) => {
  const srv = await startServer(repoHandler(repoWith('1.0', manifestBytes())));
  const { resolver } = makeResolver();
  t.after(() => Promise.all([srv.close(), resolver.close()]));

  const err = await rejects(resolver.resolve(parseReference(`${srv.host}/team/app:nope`)));
  assert.ok(err instanceof BerthError && err.code === 'NOT_FOUND', String(err));
  assert.ok(err.message.includes(srv.host));
  assert.ok(err.message.includes(`${srv.host}/team/app:nope`));
  assert.match(err.hint ?? '', /tag/);
  assert.equal(err.details.status, 404);
});

test('an oversize manifest is TOO_LARGE, with or without Content-Length', async (t) => {
  const big = Buffer.alloc(MAX_MANIFEST_BYTES + 10, 0x20);
  for (const withLength of [true, false]) {
    const srv = await startServer((req, res) => {
      if (req.method === 'HEAD') {
        res.writeHead(200, { 'content-type': OCI_MANIFEST });
        res.end();
        return;
      }
      res.writeHead(200, withLength ? { 'content-type': OCI_MANIFEST, 'content-length': big.length } : { 'content-type': OCI_MANIFEST });
      res.end(big);
    });
    const { resolver } = makeResolver();
    const err = await rejects(resolver.resolve(parseReference(`${srv.host}/team/app:big`)));
    await Promise.all([srv.close(), resolver.close()]);
    assert.ok(err instanceof BerthError && err.code === 'TOO_LARGE', `${withLength}: ${String(err)}`);
    assert.ok(err.message.includes(String(MAX_MANIFEST_BYTES)));
  }
  t.diagnostic('checked with Content-Length and chunked');
});

test('a manifest whose bytes do not match Docker-Content-Digest is DIGEST_MISMATCH naming both', async (t) => {
  const body = manifestBytes();
  const claimed = sha256('something else');
  const srv = await startServer((req, res) => {
    res.writeHead(200, { 'content-type': OCI_MANIFEST, 'docker-content-digest': claimed, ...(req.method === 'HEAD' ? {} : { 'content-length': body.length }) });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  const { resolver } = makeResolver();
  t.after(() => Promise.all([srv.close(), resolver.close()]));

  // HEAD lacks Content-Length, so resolve must GET and check.
  const err = await rejects(resolver.resolve(parseReference(`${srv.host}/team/app:1`)));
  assert.ok(err instanceof BerthError && err.code === 'DIGEST_MISMATCH', String(err));
  assert.ok(err.message.includes(claimed), err.message);
  assert.ok(err.message.includes(sha256(body)), err.message);
  assert.equal(err.details.expected, claimed);
  assert.equal(err.details.found, sha256(body));
});

test('resolve by digest rejects a body that hashes to something else', async (t) => {
  const body = manifestBytes();
  const wanted = sha256('wanted');
  const srv = await startServer((req, res) => {
    if (req.method === 'HEAD') {
      res.writeHead(405);
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': OCI_MANIFEST });
    res.end(body);
  });
  const { resolver } = makeResolver();
  t.after(() => Promise.all([srv.close(), resolver.close()]));
  const err = await rejects(resolver.resolve(parseReference(`${srv.host}/team/app@${wanted}`)));
  assert.ok(err instanceof BerthError && err.code === 'DIGEST_MISMATCH', String(err));
  assert.equal(err.details.expected, wanted);
  assert.equal(err.details.found, sha256(body));
});
