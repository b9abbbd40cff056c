/**
 * Every example manifest directory loads without errors and declares what
 * examples/README.md says it does.
 */
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { desiredState, loadManifests } from '../../src/manifests/index.js';
import { order } from '../../src/reconcile/plan.js';

const examples = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'examples');

const expected: Record<string, { containers: string[]; images: string[] }> = {
  'single-service': { containers: ['web'], images: [] },
  'with-dependencies': { containers: ['db', 'api', 'worker', 'scheduler'], images: [] },
  'device-prefetch': { containers: [], images: ['base', 'next-release'] },
  'restart-policies': { containers: ['flaky', 'heartbeat', 'migrate-once'], images: [] },
};

describe('examples/', () => {
  test('every example directory is listed here', async () => {
    const dirs = (await readdir(examples, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name).sort();
    assert.deepEqual(dirs, Object.keys(expected).sort());
  });

  for (const [dir, want] of Object.entries(expected)) {
    test(`${dir} loads without errors and declares ${[...want.containers, ...want.images].join(', ')}`, async () => {
      const result = await loadManifests([join(examples, dir)]);
      assert.deepEqual(result.errors, []);
      const desired = desiredState(result.objects);
      // Containers in dependency order: what apply creates first comes first.
      assert.deepEqual(order(desired.containers).map((c) => c.name), want.containers);
      assert.deepEqual(desired.images.map((i) => i.name), want.images);
      for (const c of desired.containers) assert.match(c.image, /^registry\.demo\/berth\//);
    });
  }

  test('the restart examples carry their policies', async () => {
    const desired = desiredState((await loadManifests([join(examples, 'restart-policies')])).objects);
    const by = new Map(desired.containers.map((c) => [c.name, c.restart]));
    assert.deepEqual(by.get('heartbeat'), { policy: 'always', initialMs: 500, maxMs: 60_000 });
    assert.deepEqual(by.get('flaky'), { policy: 'on-failure', maxRetries: 3, initialMs: 1000, maxMs: 10_000 });
    assert.equal(by.get('migrate-once')?.policy, 'never');
  });
});
