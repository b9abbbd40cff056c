/**
 * The daemon's HTTP API on its unix socket, spoken to with plain node:http
 * (not berth's client): permissions, /status, /events as server-sent
 * events (resumable by ?since and Last-Event-ID), /metrics in Prometheus'
 * text format, POST /reconcile and unknown endpoints. One daemon over one
 * root for the whole file, with a manifest dir it pulled and converged.
 */
import assert from 'node:assert/strict';
import { mkdir, stat } from 'node:fs/promises';
import { request, type IncomingMessage } from 'node:http';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { StoredEvent } from '../../src/metadata/store.js';
import type { ApplyReport, ObjectStatus } from '../../src/reconcile/index.js';
import { eventually, ps, removeAll, type DaemonHandle } from '../helpers/containers.js';
import { containerYaml, pushDemoImages, startDaemonWith, writeManifests, writeMirrorConfig, type DemoImages } from '../helpers/manifests.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { tempDir } from '../helpers/tmp.js';

let reg: RegistryHandle;
let img: DemoImages;
let tmp: { path: string; cleanup(): Promise<void> };
let root: string;
let dir: string;
let socket: string;
let daemon: DaemonHandle | undefined;

before(async () => {
  reg = await startRegistry();
  img = await pushDemoImages(reg);
  tmp = await tempDir('berth-api');
  root = tmp.path;
  dir = join(root, 'manifests');
  socket = join(root, 'run', 'api.sock');
  await mkdir(dir);
  const mirror = await writeMirrorConfig(join(root, 'registries.yaml'), reg.host);
  await writeManifests(dir, {
    'web.yaml': containerYaml('web', { image: img.v1 }),
    'phoenix.yaml': containerYaml('phoenix', { image: img.v1, restart: { policy: 'always', backoff: { initial: '200ms' } } }),
  });
  daemon = await startDaemonWith(root, mirror, ['-f', dir]);
  await eventually('the daemon to converge', async () => {
    const vs = await ps(root);
    return vs.length === 2 && vs.every((v) => v.state === 'running') ? true : undefined;
  }, 30_000, 250);
});

after(async () => {
  await daemon?.kill();
  if (root) await removeAll(root, (await ps(root).catch(() => [])).map((v) => v.name));
  await tmp?.cleanup();
  await reg?.stop();
});

interface Answer {
  status: number;
  type: string;
  body: string;
}

function call(method: string, path: string, opts: { body?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, method, path, headers: opts.headers ?? {} }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

interface Sse {
  id: number;
  event: string;
  data: StoredEvent;
}

/** Opens GET /events and collects parsed messages until `enough` says so; then closes the stream. */
function readEvents(path: string, headers: Record<string, string>, enough: (got: Sse[]) => boolean, timeoutMs = 15_000): Promise<{ res: IncomingMessage; events: Sse[]; raw: string }> {
  return new Promise((resolve, reject) => {
    const events: Sse[] = [];
    let raw = '';
    let buf = '';
    const req = request({ socketPath: socket, method: 'GET', path, headers }, (res) => {
      res.setEncoding('utf8');
      const timer = setTimeout(() => {
        req.destroy();
        reject(new Error(`timed out reading ${path}; got ${raw}`));
      }, timeoutMs);
      res.on('data', (c: string) => {
        raw += c;
        buf += c;
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          if (block.startsWith(':')) continue;
          const fields = new Map(block.split('\n').map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 2)] as const));
          events.push({ id: Number(fields.get('id')), event: fields.get('event') ?? '', data: JSON.parse(fields.get('data') ?? 'null') as StoredEvent });
        }
        if (enough(events)) {
          clearTimeout(timer);
          req.destroy();
          resolve({ res, events, raw });
        }
      });
    });
    req.on('error', (err) => {
      if (!('code' in err && err.code === 'ECONNRESET')) reject(err);
    });
    req.end();
  });
}

function metric(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

describe('the daemon API', () => {
  test('the socket is 0600 in a 0700 directory', async () => {
    const s = await stat(socket);
    assert.ok(s.isSocket());
    assert.equal(s.mode & 0o777, 0o600);
    assert.equal((await stat(dirname(socket))).mode & 0o777, 0o700);
  });

  test('GET /status: JSON with conditions for every declared object', async () => {
    const a = await call('GET', '/status');
    assert.equal(a.status, 200);
    assert.match(a.type, /application\/json/);
    const st = JSON.parse(a.body) as { objects: ObjectStatus[]; lastReconcile: { converged: boolean; manifestErrors: number } };
    assert.deepEqual(st.objects.map((o) => o.name), ['phoenix', 'web']);
    for (const o of st.objects) {
      assert.deepEqual(o.conditions.map((c) => c.type), ['Ready', 'Progressing', 'Degraded']);
      assert.deepEqual(o.conditions.map((c) => c.status), [true, false, false]);
      assert.match(o.imageDigest ?? '', /^sha256:[0-9a-f]{64}$/);
    }
    assert.deepEqual(st.lastReconcile, { converged: true, manifestErrors: 0 });
  });

  test('GET /events?since=N: server-sent events after N; Last-Event-ID resumes; new events arrive live', async () => {
    const all = await readEvents('/events?since=0', {}, (got) => got.some((e) => e.event === 'reconcile.done'));
    assert.equal(all.res.statusCode, 200);
    assert.match(String(all.res.headers['content-type']), /text\/event-stream/);
    assert.match(all.raw, /^id: \d+\nevent: [a-z.-]+\ndata: \{.*\}\n\n/);
    const ids = all.events.map((e) => e.id);
    assert.deepEqual(ids, [...ids].sort((a, b) => a - b));
    for (const e of all.events) assert.deepEqual([e.data.seq, e.data.event.type], [e.id, e.event]);
    assert.ok(all.events.some((e) => e.event === 'pull.done'));

    const n = ids[2]!;
    const since = await readEvents(`/events?since=${n}`, {}, (got) => got.length >= 2);
    assert.deepEqual(since.events.slice(0, 2).map((e) => e.id), ids.slice(3, 5));
    const resumed = await readEvents('/events', { 'last-event-id': String(n) }, (got) => got.length >= 1);
    assert.equal(resumed.events[0]!.id, ids[3]);

    // Live: a reconcile asked for while the stream is open shows up on it.
    const last = ids.at(-1)!;
    const isApiRun = (e: Sse): boolean => e.event === 'reconcile.done' && (e.data.event as { trigger: string }).trigger === 'api';
    const live = readEvents(`/events?since=${last}`, {}, (got) => got.some(isApiRun), 20_000);
    const r = await call('POST', '/reconcile', { body: '{}' });
    assert.equal(r.status, 200, r.body);
    const got = await live;
    assert.ok(got.events.every((e) => e.id > last));
    const done = got.events.find(isApiRun)!;
    assert.equal((done.data.event as { trigger: string }).trigger, 'api');
  });

  test('GET /events with a bad since: 400 JSON', async () => {
    const a = await call('GET', '/events?since=-1');
    assert.equal(a.status, 400);
    assert.equal((JSON.parse(a.body) as { code: string }).code, 'INVALID_ARGUMENT');
  });

  test('POST /reconcile answers with the apply report', async () => {
    const a = await call('POST', '/reconcile', { body: JSON.stringify({ paths: [dir] }), headers: { 'content-type': 'application/json' } });
    assert.equal(a.status, 200, a.body);
    const report = JSON.parse(a.body) as ApplyReport & { manifestErrors: unknown[] };
    assert.equal(report.converged, true);
    assert.deepEqual(report.steps, []);
    assert.deepEqual(report.plan.unchanged.sort(), ['phoenix', 'web']);
    assert.deepEqual(report.manifestErrors, []);
    const bad = await call('POST', '/reconcile', { body: 'not json' });
    assert.equal(bad.status, 400);
    assert.equal((JSON.parse(bad.body) as { code: string }).code, 'INVALID_ARGUMENT');
  });

  test('GET /metrics: Prometheus text; berth_up, containers by state, pull bytes, restarts', async () => {
    const a = await call('GET', '/metrics');
    assert.equal(a.status, 200);
    assert.match(a.type, /^text\/plain; version=0\.0\.4/);
    assert.equal(metric(a.body, 'berth_up'), 1);
    assert.equal(metric(a.body, 'berth_containers{state="running"}'), (await ps(root)).filter((v) => v.state === 'running').length);
    assert.equal(metric(a.body, 'berth_containers{state="running"}'), 2);
    assert.ok(metric(a.body, 'berth_pull_bytes_total')! > 0, 'the daemon pulled');
    assert.ok(metric(a.body, 'berth_pulls_total')! >= 1);
    assert.ok(metric(a.body, 'berth_reconcile_duration_seconds_count')! >= 1);
    assert.equal(metric(a.body, 'berth_manifest_errors'), 0);
    // Every sample line is NAME{labels} VALUE, and every name has a TYPE.
    for (const l of a.body.split('\n').filter((x) => x && !x.startsWith('#'))) assert.match(l, /^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+-]+$/, l);
    for (const name of new Set(a.body.split('\n').filter((x) => x && !x.startsWith('#')).map((l) => l.split(/[{ ]/)[0]!.replace(/_(sum|count)$/, '')))) {
      assert.match(a.body, new RegExp(`# TYPE ${name} (gauge|counter|summary)`), name);
    }
    assert.equal(metric(a.body, 'berth_container_restarts_total{container="phoenix"}'), undefined);

    const phoenix = (await ps(root)).find((v) => v.name === 'phoenix')!;
    process.kill(phoenix.pid!, 'SIGKILL');
    await eventually('a restart to be counted', async () => {
      const m = await call('GET', '/metrics');
      return metric(m.body, 'berth_container_restarts_total{container="phoenix"}') === 1 ? true : undefined;
    }, 20_000, 100);
    const after = await call('GET', '/metrics');
    assert.equal(metric(after.body, 'berth_containers{state="running"}'), 2);
  });

  test('an unknown endpoint: 404 JSON naming it, with the endpoints as hint', async () => {
    for (const [method, path] of [['GET', '/nope'], ['DELETE', '/status'], ['GET', '/reconcile']] as const) {
      const a = await call(method, path);
      assert.equal(a.status, 404);
      assert.match(a.type, /application\/json/);
      const e = JSON.parse(a.body) as { code: string; message: string; hint: string };
      assert.equal(e.code, 'NOT_FOUND');
      assert.ok(e.message.includes(`${method} ${path}`), e.message);
      assert.match(e.hint, /GET \/status/);
    }
  });
});
