/**
 * plan(): the pure diff of desired and actual state, case by case, with
 * desired containers from the manifests' fixture builder and actual ones
 * recorded the way apply records them (the spec hash and the spec).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { DesiredContainer, DesiredImage, DesiredState } from '../../../src/manifests/index.js';
import { specHash } from '../../../src/manifests/index.js';
import type { Digest } from '../../../src/oci/digest.js';
import { hasChanges, plan, type ActualContainer, type ActualState, type Change, type PlanOptions } from '../../../src/reconcile/index.js';
import { desired } from '../manifests/fixtures.js';

const IMAGE = 'registry.example:5000/team/web:1.4';
const OTHER = 'registry.example:5000/team/cache:2';
const D1 = `sha256:${'1'.repeat(64)}` as Digest;
const D2 = `sha256:${'2'.repeat(64)}` as Digest;

const canonical = (ref: string): string => ref;
const opts = (o: Partial<PlanOptions> = {}): PlanOptions => ({ prune: false, canonical, ...o });

function state(containers: DesiredContainer[], images: DesiredImage[] = []): DesiredState {
  return { containers, images };
}

/** A container as apply leaves it: made from `spec` with image digest `digest`. */
function made(spec: DesiredContainer, o: Partial<ActualContainer> = {}, digest: Digest = D1): ActualContainer {
  return { name: spec.name, image: spec.image, imageDigest: digest, state: 'running', desired: 'running', managed: { specHash: specHash(spec, digest), spec }, ...o };
}

function actual(containers: ActualContainer[], images: Record<string, Digest> = { [IMAGE]: D1 }): ActualState {
  return { containers, images: new Map(Object.entries(images)) };
}

/** "action name" (or "pull image") for each change, in order. */
function steps(changes: Change[]): string[] {
  return changes.map((c) => (c.action === 'pull' || c.action === 'untag' ? `${c.action} ${c.image}` : `${c.action} ${c.name}`));
}

describe('plan', () => {
  test('nothing declared, nothing present: an empty plan', () => {
    const p = plan(state([]), actual([], {}), opts());
    assert.deepEqual(p, { changes: [], refresh: [], pending: [], conflicts: [], orphans: [], unchanged: [] });
    assert.equal(hasChanges(p), false);
  });

  test('declared, image missing: the pull comes first and the container is pending', () => {
    const p = plan(state([desired()]), actual([], {}), opts());
    assert.deepEqual(steps(p.changes), [`pull ${IMAGE}`]);
    assert.deepEqual(p.pending, ['web']);
    assert.equal(hasChanges(p), true);
  });

  test('declared, image stored: a create with the digest and the spec hash', () => {
    const c = desired();
    const p = plan(state([c]), actual([]), opts());
    assert.equal(p.changes.length, 1);
    const create = p.changes[0]!;
    assert.equal(create.action, 'create');
    assert.ok(create.action === 'create');
    assert.equal(create.digest, D1);
    assert.equal(create.specHash, specHash(c, D1));
    assert.deepEqual(p.pending, []);
  });

  test('the same spec: unchanged, no change', () => {
    const c = desired({ config: { env: { LOG_LEVEL: 'info' } } });
    const p = plan(state([c]), actual([made(c)]), opts());
    assert.deepEqual(p.changes, []);
    assert.deepEqual(p.unchanged, ['web']);
    assert.equal(hasChanges(p), false);
  });

  test('an env change replaces, with the field in the diff', () => {
    const was = desired({ config: { env: { LOG_LEVEL: 'info', KEEP: '1' } } });
    const now = desired({ config: { env: { LOG_LEVEL: 'debug', KEEP: '1' } } });
    const p = plan(state([now]), actual([made(was)]), opts());
    assert.deepEqual(steps(p.changes), ['replace web']);
    const r = p.changes[0]!;
    assert.ok(r.action === 'replace');
    assert.deepEqual(r.diff, [{ path: 'config.env.LOG_LEVEL', from: 'info', to: 'debug', replace: true }]);
    assert.match(r.reason, /config\.env\.LOG_LEVEL/);
    assert.equal(r.specHash, specHash(now, D1));
  });

  test('a new image digest replaces, the reason naming the digest', () => {
    const c = desired();
    const p = plan(state([c]), actual([made(c)], { [IMAGE]: D2 }), opts());
    assert.deepEqual(steps(p.changes), ['replace web']);
    const r = p.changes[0]!;
    assert.ok(r.action === 'replace');
    assert.ok(r.reason.includes(D2), r.reason);
    assert.deepEqual(r.diff.map((d) => [d.path, d.from, d.to]), [['imageDigest', D1, D2]]);
    assert.equal(r.digest, D2);
  });

  for (const [what, change, path] of [
    ['labels', { labels: { app: 'shop' } }, 'labels.app'],
    ['the restart policy', { restart: { policy: 'never', initialMs: 1000, maxMs: 60_000 } }, 'restart.policy'],
    ['the stop timeout', { stopTimeoutMs: 30_000 }, 'stopTimeoutMs'],
    ['the stop signal', { config: { stopSignal: 'SIGINT' } }, 'config.stopSignal'],
  ] as const) {
    test(`a change of ${what} updates in place, keeping the spec hash`, () => {
      const was = desired({ labels: { app: 'web' } });
      const now = desired({ labels: { app: 'web' }, ...(change as Partial<DesiredContainer>) });
      const p = plan(state([now]), actual([made(was)]), opts());
      assert.deepEqual(steps(p.changes), ['update web']);
      const u = p.changes[0]!;
      assert.ok(u.action === 'update');
      assert.deepEqual(u.diff.map((d) => [d.path, d.replace]), [[path, false]]);
      assert.equal(u.specHash, specHash(was, D1));
      assert.equal(u.container, now);
    });
  }

  test('declared stopped while running: a stop, not a replace', () => {
    const was = desired();
    const p = plan(state([desired({ state: 'stopped' })]), actual([made(was)]), opts());
    assert.ok(!p.changes.some((c) => c.action === 'replace' || c.action === 'delete' || c.action === 'create'), JSON.stringify(steps(p.changes)));
    assert.ok(steps(p.changes).includes('stop web'));
  });

  test('declared stopped and stopped by berth: unchanged', () => {
    const c = desired({ state: 'stopped' });
    const p = plan(state([c]), actual([made(c, { state: 'exited', desired: 'stopped' })]), opts());
    assert.deepEqual(p.changes, []);
    assert.deepEqual(p.unchanged, ['web']);
  });

  test('declared running and stopped by berth: a start', () => {
    const c = desired();
    const p = plan(state([c]), actual([made(c, { state: 'exited', desired: 'stopped' })]), opts());
    assert.deepEqual(steps(p.changes), ['start web']);
  });

  test('created and never started: a start', () => {
    const c = desired();
    const p = plan(state([c]), actual([made(c, { state: 'created' })]), opts());
    assert.deepEqual(steps(p.changes), ['start web']);
  });

  test('exited by itself (a finished job): left to its restart policy', () => {
    const c = desired();
    for (const s of ['exited', 'restarting'] as const) {
      const p = plan(state([c]), actual([made(c, { state: s, desired: 'running' })]), opts());
      assert.deepEqual(p.changes, [], s);
      assert.deepEqual(p.unchanged, ['web'], s);
    }
  });

  test('a container of the same name berth apply did not make: a conflict, left alone', () => {
    const c = desired();
    const byHand: ActualContainer = { name: 'web', image: IMAGE, imageDigest: D2, state: 'running', desired: 'running' };
    for (const prune of [false, true]) {
      const p = plan(state([c]), actual([byHand]), opts({ prune }));
      assert.deepEqual(p.changes, []);
      assert.equal(p.conflicts.length, 1);
      assert.equal(p.conflicts[0]!.name, 'web');
      assert.match(p.conflicts[0]!.message, /berth rm web/);
      assert.deepEqual(p.orphans, []);
    }
  });

  test('unmanaged containers no manifest declares are neither orphans nor pruned', () => {
    const byHand: ActualContainer = { name: 'mine', image: IMAGE, imageDigest: D1, state: 'running', desired: 'running' };
    const p = plan(state([]), actual([byHand]), opts({ prune: true }));
    assert.deepEqual(p.changes, []);
    assert.deepEqual(p.orphans, []);
  });

  test('managed containers no manifest declares: deleted with prune, listed as orphans without', () => {
    const old = made(desired({ name: 'old', source: { file: 'old.yaml', line: 1, col: 1 } }));
    const kept = plan(state([]), actual([old]), opts());
    assert.deepEqual(kept.changes, []);
    assert.deepEqual(kept.orphans, ['old']);
    assert.equal(hasChanges(kept), false);
    const pruned = plan(state([]), actual([old]), opts({ prune: true }));
    assert.deepEqual(steps(pruned.changes), ['delete old']);
    assert.deepEqual(pruned.orphans, []);
  });

  test('keep and badFiles spare containers of manifests that failed to load from prune', () => {
    const a = made(desired({ name: 'a', source: { file: '/m/a.yaml', line: 1, col: 1 } }));
    const b = made(desired({ name: 'b', source: { file: '/m/broken.yaml', line: 1, col: 1 } }));
    const c = made(desired({ name: 'c', source: { file: '/m/gone.yaml', line: 1, col: 1 } }));
    const p = plan(state([]), actual([a, b, c]), opts({ prune: true, keep: new Set(['a']), badFiles: new Set(['/m/broken.yaml']) }));
    assert.deepEqual(steps(p.changes), ['delete c']);
  });

  describe('image names the reconciler pulled (managedImages)', () => {
    const OLD = 'registry.example:5000/team/web:1.3';
    const BASE = 'registry.example:5000/team/base:2';
    const managed = (containers: ActualContainer[], names: string[], images: Record<string, Digest> = { [IMAGE]: D1 }): ActualState => ({
      ...actual(containers, images),
      managedImages: new Set(names),
    });

    test('with prune, one no manifest declares and no container names is untagged, last; without prune it stays', () => {
      const c = desired();
      const p = plan(state([c]), managed([made(c)], [IMAGE, OLD]), opts({ prune: true }));
      assert.deepEqual(steps(p.changes), [`untag ${OLD}`]);
      assert.equal(hasChanges(p), true);
      assert.deepEqual(plan(state([c]), managed([made(c)], [IMAGE, OLD]), opts()).changes, []);
    });

    test('a tag moved in the manifest: the replace comes first, then the old name goes', () => {
      const was = desired({ image: OLD });
      const now = desired({ image: IMAGE });
      const p = plan(state([now]), managed([made(was)], [IMAGE, OLD], { [IMAGE]: D2 }), opts({ prune: true }));
      assert.deepEqual(steps(p.changes), ['replace web', `untag ${OLD}`]);
    });

    test('kept while anything names it: an Image object, a container that stays (pending, by hand, in conflict)', () => {
      const base: DesiredImage = { kind: 'Image', name: 'base', labels: {}, ref: BASE, source: { file: 'base.yaml', line: 1, col: 1 } };
      assert.deepEqual(plan(state([], [base]), managed([], [BASE], { [BASE]: D1 }), opts({ prune: true })).changes, []);
      // Its container waits for a new image that is not stored yet: it keeps running the old one, and that name stays.
      const pending = plan(state([desired({ image: IMAGE })]), managed([made(desired({ image: OLD }))], [OLD], {}), opts({ prune: true }));
      assert.deepEqual(steps(pending.changes), [`pull ${IMAGE}`]);
      const byHand: ActualContainer = { name: 'mine', image: OLD, imageDigest: D1, state: 'exited', desired: 'running' };
      assert.deepEqual(plan(state([]), managed([byHand], [OLD]), opts({ prune: true })).changes, []);
    });

    test('its last container pruned in the same plan: the delete, then the untag', () => {
      const old = made(desired({ name: 'old', image: OLD }));
      assert.deepEqual(steps(plan(state([]), managed([old], [OLD]), opts({ prune: true })).changes), ['delete old', `untag ${OLD}`]);
    });

    test('none while a manifest failed to load: it may declare any of them', () => {
      for (const o of [{ keep: new Set(['x']) }, { badFiles: new Set(['/m/broken.yaml']) }]) {
        assert.deepEqual(plan(state([]), managed([], [OLD]), opts({ prune: true, ...o })).changes, []);
      }
    });

    test('names nobody marked as the reconciler\'s (pulled or imported by hand) are never untagged', () => {
      assert.deepEqual(plan(state([]), actual([], { [OLD]: D1 }), opts({ prune: true })).changes, []);
    });
  });

  test('order: pulls, then stops (dependents first), deletes (dependents first), then creates and replaces in dependency order', () => {
    const other = desired({ name: 'cache', image: OTHER });
    const db = desired({ name: 'db', config: { env: { V: '2' } } });
    const api = desired({ name: 'api', dependsOn: ['db'] });
    const worker = desired({ name: 'worker', dependsOn: ['api'] });
    const front = desired({ name: 'front', state: 'stopped' });
    const edge = desired({ name: 'edge', state: 'stopped', dependsOn: ['front'] });
    const old = desired({ name: 'old' });
    const oldChild = desired({ name: 'a-old-child', dependsOn: ['old'] });
    const p = plan(
      state([worker, api, db, other, front, edge]),
      actual([
        made(desired({ name: 'db', config: { env: { V: '1' } } })),
        made(front, { state: 'running' }),
        made(edge, { state: 'running' }),
        made(old),
        made(oldChild),
      ]),
      opts({ prune: true }),
    );
    assert.deepEqual(steps(p.changes), [`pull ${OTHER}`, 'stop edge', 'stop front', 'delete a-old-child', 'delete old', 'replace db', 'create api', 'create worker']);
    assert.deepEqual(p.pending, ['cache']);
  });

  test('a spec hash of another version is replaced, saying so', () => {
    const c = desired();
    const p = plan(state([c]), actual([made(c, { managed: { specHash: `v0:${'a'.repeat(64)}`, spec: c } })]), opts());
    assert.deepEqual(steps(p.changes), ['replace web']);
    const r = p.changes[0]!;
    assert.ok(r.action === 'replace');
    assert.match(r.reason, /another berth version/);
    assert.deepEqual(r.diff, []);
    assert.equal(r.specHash, specHash(c, D1));
  });

  test('pullPolicy Always refreshes a stored image without being a change', () => {
    const c = desired({ pullPolicy: 'Always' });
    const p = plan(state([c]), actual([made(c)]), opts());
    assert.deepEqual(p.changes, []);
    assert.deepEqual(p.refresh, [IMAGE]);
    assert.equal(hasChanges(p), false);
  });

  test('pullPolicy Never with the image missing: a conflict, no pull', () => {
    const p = plan(state([desired({ pullPolicy: 'Never' })]), actual([], {}), opts());
    assert.deepEqual(p.changes, []);
    assert.deepEqual(p.pending, []);
    assert.match(p.conflicts[0]!.message, /pullPolicy is Never/);
  });

  test('an Image object not stored is pulled; stored, nothing', () => {
    const img: DesiredImage = { kind: 'Image', name: 'base', labels: {}, ref: OTHER, source: { file: 'i.yaml', line: 1, col: 1 } };
    assert.deepEqual(steps(plan(state([], [img]), actual([], {}), opts()).changes), [`pull ${OTHER}`]);
    assert.deepEqual(plan(state([], [img]), actual([], { [OTHER]: D1 }), opts()).changes, []);
  });

  test('one pull per image, however many containers need it', () => {
    const p = plan(state([desired({ name: 'a' }), desired({ name: 'b' })]), actual([], {}), opts());
    assert.deepEqual(steps(p.changes), [`pull ${IMAGE}`]);
    assert.deepEqual(p.pending, ['a', 'b']);
  });

  test('the same inputs give the same plan', () => {
    const cs = [desired({ name: 'b', dependsOn: ['a'] }), desired({ name: 'a' }), desired({ name: 'c', image: OTHER })];
    const a = actual([made(desired({ name: 'z' }))]);
    assert.deepEqual(plan(state(cs), a, opts({ prune: true })), plan(state([...cs].reverse()), a, opts({ prune: true })));
  });
});
