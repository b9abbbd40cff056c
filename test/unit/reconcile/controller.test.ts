/**
 * apply() and the Controller over fakes: an in-memory container service
 * (only the methods apply calls) and an image store whose pulls can be made
 * to fail with a chosen code. What is checked: the two phases and what a
 * failure skips; debouncing; retry with per-key backoff for transient codes
 * and none for terminal ones.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ContainerService, ContainerView } from '../../../src/containers/index.js';
import { BerthError, ErrorCodes, type ErrorCode } from '../../../src/errors.js';
import { LocalEventBus, type BerthEvent } from '../../../src/events.js';
import { createLogger, type LogRecord } from '../../../src/log.js';
import type { DesiredContainer } from '../../../src/manifests/index.js';
import type { Digest } from '../../../src/oci/digest.js';
import { apply, BACKOFF, Controller, retryable, type Desired, type ReconcileDeps } from '../../../src/reconcile/index.js';
import { desired } from '../manifests/fixtures.js';

const IMAGE = 'registry.example:5000/team/web:1.4';
const OTHER = 'registry.example:5000/team/cache:2';
const D1 = `sha256:${'1'.repeat(64)}` as Digest;

interface Fake {
  deps: ReconcileDeps;
  views: Map<string, ContainerView>;
  calls: string[];
  pulls: Array<{ ref: string; at: number }>;
  events: BerthEvent[];
  logs: LogRecord[];
  /** The code the next pulls of a ref fail with; absent: they succeed. */
  failPull: Map<string, ErrorCode>;
  /** Names whose start fails with FAILED_PRECONDITION. */
  failStart: Set<string>;
}

function fake(): Fake {
  const views = new Map<string, ContainerView>();
  const calls: string[] = [];
  const stored = new Map<string, Digest>();
  const f: Fake = { views, calls, pulls: [], events: [], logs: [], failPull: new Map(), failStart: new Set(), deps: undefined as unknown as ReconcileDeps };
  const must = (name: string): ContainerView => {
    const v = views.get(name);
    if (!v) throw new BerthError('NOT_FOUND', `container ${name} not found`);
    return v;
  };
  const containers = {
    async list() {
      return [...views.values()].map((v) => ({ ...v }));
    },
    async record(name: string) {
      return must(name);
    },
    async create(req: { name: string; image: string; managed: ContainerView['managed'] }) {
      calls.push(`create ${req.name}`);
      views.set(req.name, {
        name: req.name,
        id: req.name,
        image: req.image,
        imageDigest: stored.get(req.image)!,
        state: 'created',
        desired: 'running',
        restarts: 0,
        restart: { policy: 'never', initialMs: 1000, maxMs: 60_000 },
        labels: {},
        ...(req.managed ? { managed: req.managed } : {}),
      } as ContainerView);
    },
    async start(name: string) {
      calls.push(`start ${name}`);
      if (f.failStart.has(name)) throw new BerthError('FAILED_PRECONDITION', `${name} cannot start`);
      Object.assign(must(name), { state: 'running', desired: 'running' });
    },
    // ContainerService.run: create and start under one lock; recorded as the two steps it is made of.
    async run(req: { name: string; image: string; managed: ContainerView['managed'] }) {
      await containers.create(req);
      await containers.start(req.name);
    },
    async stop(name: string) {
      calls.push(`stop ${name}`);
      Object.assign(must(name), { state: 'exited', desired: 'stopped' });
    },
    async remove(name: string) {
      calls.push(`remove ${name}`);
      views.delete(name);
    },
    async updateSettings(name: string) {
      calls.push(`update ${name}`);
    },
  };
  const bus = new LocalEventBus();
  bus.subscribe((e) => f.events.push(e));
  f.deps = {
    containers: containers as unknown as ContainerService,
    images: {
      async stored(ref) {
        return stored.get(ref);
      },
      async pull(ref) {
        f.pulls.push({ ref, at: Date.now() });
        const code = f.failPull.get(ref);
        if (code) throw new BerthError(code, `pull ${ref}: ${code}`);
        stored.set(ref, D1);
      },
      async managed() {
        return [];
      },
      async untag() {},
    },
    events: bus,
    logger: createLogger((r) => f.logs.push(r), 'debug'),
    canonical: (ref) => ref,
  };
  return f;
}

const NO_PRUNE = { prune: false, keep: new Set<string>(), badFiles: new Set<string>() };

function desiredOf(containers: DesiredContainer[]): Desired {
  return { desired: { containers, images: [] }, protect: NO_PRUNE, manifestErrors: 0 };
}

describe('retryable', () => {
  test('transient codes and LOCKED are retried; the rest wait for a change', () => {
    const retried = ErrorCodes.filter((c) => retryable(c)).sort();
    assert.deepEqual(retried, ['LOCKED', 'RATE_LIMITED', 'TIMEOUT', 'TRUNCATED', 'UNAVAILABLE']);
    for (const c of ['INVALID_ARGUMENT', 'FAILED_PRECONDITION', 'NOT_FOUND', 'DIGEST_MISMATCH', 'UNAUTHORIZED'] as const) assert.equal(retryable(c), false, c);
  });
});

describe('apply over fakes', () => {
  test('pulls first, then containers in dependency order, created and started', async () => {
    const f = fake();
    const report = await apply(f.deps, { containers: [desired({ name: 'api', dependsOn: ['db'] }), desired({ name: 'db' })], images: [] }, NO_PRUNE);
    assert.equal(report.converged, true);
    assert.deepEqual(f.pulls.map((p) => p.ref), [IMAGE]);
    assert.deepEqual(f.calls, ['create db', 'start db', 'create api', 'start api']);
    assert.deepEqual(report.planned.pending, ['db', 'api']);
    assert.deepEqual(report.plan.pending, []);
    assert.deepEqual(report.steps.map((s) => ('name' in s.change ? `${s.change.action} ${s.change.name}` : s.change.action)), ['pull', 'create db', 'create api']);
  });

  test('a failed pull skips only the containers needing that image, naming it', async () => {
    const f = fake();
    f.failPull.set(OTHER, 'UNAVAILABLE');
    const report = await apply(f.deps, { containers: [desired({ name: 'web' }), desired({ name: 'cache', image: OTHER })], images: [] }, NO_PRUNE);
    assert.equal(report.converged, false);
    assert.deepEqual(f.calls, ['create web', 'start web']);
    const failed = report.steps.filter((s) => !s.ok);
    assert.deepEqual(failed.map((s) => [s.change.action, s.error?.code, Boolean(s.skipped)]), [
      ['pull', 'UNAVAILABLE', false],
      ['create', 'UNAVAILABLE', true],
    ]);
    // The container's message carries the pull's, so status tells why.
    assert.equal(failed[1]!.error!.message, `image ${OTHER} could not be pulled: pull ${OTHER}: UNAVAILABLE`);
  });

  test("a dependency's failure skips its dependents", async () => {
    const f = fake();
    f.failStart.add('db');
    const report = await apply(f.deps, { containers: [desired({ name: 'api', dependsOn: ['db'] }), desired({ name: 'db' }), desired({ name: 'solo' })], images: [] }, NO_PRUNE);
    assert.equal(report.converged, false);
    assert.deepEqual(f.calls, ['create db', 'start db', 'create solo', 'start solo']);
    const api = report.steps.find((s) => 'name' in s.change && s.change.name === 'api')!;
    assert.equal(api.skipped, true);
    assert.match(api.error!.message, /dependency db failed/);
  });
});

describe('Controller', () => {
  const saved = { ...BACKOFF };
  let controllers: Controller[] = [];
  beforeEach(() => {
    // Short delays so a test sees several retries; restored after each test.
    BACKOFF.initialMs = 100;
    BACKOFF.maxMs = 200;
  });
  afterEach(async () => {
    for (const c of controllers) await c.stop();
    controllers = [];
    Object.assign(BACKOFF, saved);
  });

  function controller(f: Fake, containers: DesiredContainer[], o: { debounceMs?: number; loads?: { n: number } } = {}): Controller {
    const c = new Controller({
      reconcile: f.deps,
      load: async () => {
        if (o.loads) o.loads.n++;
        return desiredOf(containers);
      },
      events: f.deps.events,
      logger: f.deps.logger,
      resyncMs: 60_000,
      debounceMs: o.debounceMs ?? 30,
    });
    controllers.push(c);
    return c;
  }

  const done = (f: Fake): Array<Extract<BerthEvent, { type: 'reconcile.done' }>> => f.events.filter((e): e is Extract<BerthEvent, { type: 'reconcile.done' }> => e.type === 'reconcile.done');

  test('triggers within the debounce window are one run, naming every reason once', async () => {
    const f = fake();
    const loads = { n: 0 };
    const c = controller(f, [desired()], { debounceMs: 50, loads });
    c.trigger('manifest change');
    c.trigger('manifest change');
    c.trigger('api');
    c.trigger('manifest change');
    await sleep(300);
    assert.equal(loads.n, 1);
    assert.deepEqual(done(f).map((e) => [e.trigger, e.converged]), [['manifest change,api', true]]);
    assert.deepEqual(f.calls, ['create web', 'start web']);
  });

  test('runs never overlap: a run requested meanwhile waits for the one in progress', async () => {
    const f = fake();
    let active = 0;
    let most = 0;
    const pull = f.deps.images.pull.bind(f.deps.images);
    f.deps.images.pull = async (ref) => {
      active++;
      most = Math.max(most, active);
      await sleep(100);
      active--;
      await pull(ref);
    };
    f.failPull.set(IMAGE, 'INVALID_ARGUMENT');
    const c = controller(f, [desired()], { debounceMs: 10 });
    const a = c.runWith('api', async () => desiredOf([desired()]));
    const b = c.runWith('api', async () => desiredOf([desired()]));
    await Promise.all([a, b]);
    assert.equal(most, 1);
    assert.equal(f.pulls.length, 2);
  });

  test('a transient pull failure is retried with doubling, capped backoff until it succeeds', async () => {
    const f = fake();
    f.failPull.set(IMAGE, 'UNAVAILABLE');
    const c = controller(f, [desired()]);
    c.trigger('start');
    // Retries after 100, 200, 200, 200 ms (plus the 30 ms debounce); without the cap the
    // last two would be 400 and 800. The upper bound leaves room for a loaded machine.
    await waitFor(() => f.pulls.length >= 5, 5000);
    const gaps = f.pulls.slice(1, 5).map((p, i) => p.at - f.pulls[i]!.at);
    assert.ok(gaps[0]! >= 95, `first gap ${gaps[0]} ms`);
    assert.ok(gaps[1]! >= 195, `second gap ${gaps[1]} ms (doubled)`);
    assert.ok(gaps[2]! >= 195, `third gap ${gaps[2]} ms`);
    assert.ok(gaps[3]! >= 195 && gaps[3]! < 700, `fourth gap ${gaps[3]} ms (capped at max)`);
    assert.ok(done(f).slice(1).every((e) => e.trigger === 'retry' && !e.converged));
    f.failPull.delete(IMAGE);
    await waitFor(() => done(f).some((e) => e.converged), 2000);
    assert.deepEqual(f.calls, ['create web', 'start web']);
    const runs = done(f).length;
    await sleep(500);
    assert.equal(done(f).length, runs, 'no more runs once converged');
  });

  test('a terminal failure is not retried, and the log says so', async () => {
    const f = fake();
    f.failPull.set(IMAGE, 'UNAUTHORIZED');
    const c = controller(f, [desired()]);
    c.trigger('start');
    await waitFor(() => done(f).length >= 1, 2000);
    await sleep(600);
    assert.equal(f.pulls.length, 1);
    assert.equal(done(f).length, 1);
    assert.ok(f.logs.some((l) => l.level === 'warn' && l.msg.includes('not retrying') && l.fields.code === 'UNAUTHORIZED'), JSON.stringify(f.logs));
    // A new trigger (a manifest change) runs again.
    c.trigger('manifest change');
    await waitFor(() => f.pulls.length === 2, 2000);
  });

  test('stop() ends retries', async () => {
    const f = fake();
    f.failPull.set(IMAGE, 'UNAVAILABLE');
    const c = controller(f, [desired()]);
    c.trigger('start');
    await waitFor(() => f.pulls.length >= 1, 2000);
    await c.stop();
    const n = f.pulls.length;
    await sleep(500);
    assert.equal(f.pulls.length, n);
  });
});

async function waitFor(cond: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(10);
  }
}
