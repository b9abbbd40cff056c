import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BerthError } from '../../../src/errors.js';
import { parseReference } from '../../../src/oci/reference.js';
import { backoffDelay, parseRetryAfter } from '../../../src/remotes/index.js';
import { deadPort, makeResolver, manifestBytes, OCI_MANIFEST, rejects, repoHandler, startServer } from './fake.js';

const repo = { manifests: new Map([['1', { body: manifestBytes(), mediaType: OCI_MANIFEST }]]), blobs: new Map<string, Buffer>() };

test('backoff is full jitter under an exponential ceiling', () => {
  const p = { baseMs: 200, maxMs: 10_000 };
  assert.equal(backoffDelay(1, { ...p, random: () => 0.999999 }), 199);
  assert.equal(backoffDelay(3, { ...p, random: () => 0.5 }), 400);
  assert.equal(backoffDelay(10, { ...p, random: () => 0.5 }), 5000);
  assert.equal(backoffDelay(4, { ...p, random: () => 0 }), 0);
});

test('Retry-After parses delta-seconds and HTTP-dates', () => {
  const now = Date.parse('2024-05-01T10:00:00Z');
  assert.equal(parseRetryAfter('7', now), 7000);
  assert.equal(parseRetryAfter('Wed, 01 May 2024 10:00:05 GMT', now), 5000);
  assert.equal(parseRetryAfter('Wed, 01 May 2024 09:00:00 GMT', now), 0);
  assert.equal(parseRetryAfter('soon', now), undefined);
  assert.equal(parseRetryAfter(undefined, now), undefined);
});

/** Fails the first `n` requests with `status` (and headers), then serves the repo. */
async function flaky(n: number, status: number, headers: Record<string, string> = {}) {
  const inner = repoHandler(repo);
  let seen = 0;
  return startServer((req, res, url) => {
    if (seen++ < n) {
      res.writeHead(status, headers);
      res.end();
      return;
    }
    return inner(req, res, url);
  });
}

test('429 with Retry-After: the requested delay is honoured, logged and published', async (t) => {
  const srv = await flaky(1, 429, { 'retry-after': '3' });
  const h = makeResolver();
  t.after(() => Promise.all([srv.close(), h.resolver.close()]));
  const ref = parseReference(`${srv.host}/team/app:1`);
  await h.resolver.resolve(ref);
  assert.deepEqual(h.sleeps, [3000]);
  assert.deepEqual(h.events, [{ type: 'pull.retry', ref: `${srv.host}/team/app:1`, host: srv.host, attempt: 2, delayMs: 3000, reason: 'HTTP 429' }]);
  assert.ok(h.logs.some((r) => r.level === 'info' && r.fields.host === srv.host && r.fields.delayMs === 3000));
});

test('a huge Retry-After is capped', async (t) => {
  const srv = await flaky(1, 503, { 'retry-after': '86400' });
  const h = makeResolver({ retry: { maxRetryAfterMs: 30_000 } });
  t.after(() => Promise.all([srv.close(), h.resolver.close()]));
  await h.resolver.resolve(parseReference(`${srv.host}/team/app:1`));
  assert.deepEqual(h.sleeps, [30_000]);
});

test('503 is retried with exponential backoff, then succeeds', async (t) => {
  const srv = await flaky(2, 503);
  const h = makeResolver();
  t.after(() => Promise.all([srv.close(), h.resolver.close()]));
  const r = await h.resolver.resolve(parseReference(`${srv.host}/team/app:1`));
  assert.equal(r.host, srv.host);
  // random() is 0.5: half of 200 and of 400.
  assert.deepEqual(h.sleeps, [100, 200]);
  assert.deepEqual(h.events.map((e) => (e.type === 'pull.retry' ? [e.attempt, e.reason] : [])), [[2, 'HTTP 503'], [3, 'HTTP 503']]);
  assert.equal(srv.requests.length, 3);
});

test('500, 502 and 504 are retried; 501 is not', async (t) => {
  for (const status of [500, 502, 504]) {
    const srv = await flaky(1, status);
    const h = makeResolver();
    await h.resolver.resolve(parseReference(`${srv.host}/team/app:1`));
    await Promise.all([srv.close(), h.resolver.close()]);
    assert.equal(h.sleeps.length, 1, `status ${status}`);
  }
  const srv = await flaky(1, 501);
  const h = makeResolver();
  t.after(() => Promise.all([srv.close(), h.resolver.close()]));
  const err = await rejects(h.resolver.resolve(parseReference(`${srv.host}/team/app:1`)));
  assert.ok(err instanceof BerthError && err.code === 'UNAVAILABLE', String(err));
  assert.equal(h.sleeps.length, 0);
});

test('503 forever is UNAVAILABLE after the configured attempts, naming host, ref and status', async (t) => {
  const srv = await flaky(Infinity, 503);
  const h = makeResolver({ retry: { attempts: 3, baseMs: 10, maxMs: 15 } });
  t.after(() => Promise.all([srv.close(), h.resolver.close()]));
  const err = await rejects(h.resolver.resolve(parseReference(`${srv.host}/team/app:1`)));
  assert.ok(err instanceof BerthError && err.code === 'UNAVAILABLE', String(err));
  assert.equal(srv.requests.length, 3);
  assert.deepEqual(h.sleeps, [5, 7]);
  for (const part of [srv.host, `${srv.host}/team/app:1`, '503', '3 attempts']) assert.ok(err.message.includes(part), `${err.message} lacks ${part}`);
  assert.equal(err.details.status, 503);
  assert.equal(err.details.attempts, 3);
});

test('429 forever is RATE_LIMITED', async (t) => {
  const srv = await flaky(Infinity, 429);
  const h = makeResolver({ retry: { attempts: 2 } });
  t.after(() => Promise.all([srv.close(), h.resolver.close()]));
  const err = await rejects(h.resolver.resolve(parseReference(`${srv.host}/team/app:1`)));
  assert.ok(err instanceof BerthError && err.code === 'RATE_LIMITED', String(err));
  assert.equal(srv.requests.length, 2);
  assert.ok(err.message.includes(srv.host) && err.message.includes('429'));
});

test('connection refused is retried, then UNAVAILABLE naming the host with a hint', async (t) => {
  const port = await deadPort();
  const h = makeResolver({ retry: { attempts: 4 } });
  t.after(() => h.resolver.close());
  const err = await rejects(h.resolver.resolve(parseReference(`127.0.0.1:${port}/team/app:1`)));
  assert.ok(err instanceof BerthError && err.code === 'UNAVAILABLE', String(err));
  assert.ok(err.message.includes(`127.0.0.1:${port}`), err.message);
  assert.match(err.message, /connection refused/);
  assert.match(err.hint ?? '', /network|mirror/);
  assert.equal(h.sleeps.length, 3);
  assert.equal(h.events.length, 3);
});

test('an unknown host is UNAVAILABLE naming it', async (t) => {
  const h = makeResolver({ retry: { attempts: 1 } });
  t.after(() => h.resolver.close());
  const err = await rejects(h.resolver.resolve(parseReference('no-such-registry.invalid/team/app:1')));
  assert.ok(err instanceof BerthError && err.code === 'UNAVAILABLE', String(err));
  assert.ok(err.message.includes('no-such-registry.invalid'), err.message);
  assert.match(err.hint ?? '', /name|network/);
});

test('cancelling during a backoff stops with CANCELLED', async (t) => {
  const srv = await flaky(Infinity, 503);
  const ac = new AbortController();
  const h = makeResolver({
    sleep: async () => {
      ac.abort();
    },
  });
  t.after(() => Promise.all([srv.close(), h.resolver.close()]));
  const err = await rejects(h.resolver.resolve(parseReference(`${srv.host}/team/app:1`), ac.signal));
  assert.ok(err instanceof BerthError && err.code === 'CANCELLED', String(err));
  assert.equal(srv.requests.length, 1);
});

test('a long backoff is cut short by cancellation', async (t) => {
  const srv = await flaky(Infinity, 503, { 'retry-after': '60' });
  const ac = new AbortController();
  const h = makeResolver({ sleep: () => new Promise<void>(() => {}) });
  t.after(() => Promise.all([srv.close(), h.resolver.close()]));
  setTimeout(() => ac.abort(), 50);
  const started = Date.now();
  const err = await rejects(h.resolver.resolve(parseReference(`${srv.host}/team/app:1`), ac.signal));
  assert.ok(err instanceof BerthError && err.code === 'CANCELLED', String(err));
  assert.ok(Date.now() - started < 5000);
});
