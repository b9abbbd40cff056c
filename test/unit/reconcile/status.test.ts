/**
 * statusOf's conditions for a container that exited with an error while it
 * should run: Degraded only once its restart policy is done with it; before
 * the supervisor has taken the exit (a moment, or until a daemon runs) it is
 * a restart to come.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ContainerView } from '../../../src/containers/index.js';
import type { RestartPolicy } from '../../../src/metadata/store.js';
import type { Digest } from '../../../src/oci/digest.js';
import { statusOf } from '../../../src/reconcile/status.js';

function view(over: Omit<Partial<ContainerView>, 'restart'> & { restart: Partial<RestartPolicy> }): ContainerView {
  const { restart, ...rest } = over;
  return {
    name: 'c',
    id: 'id',
    image: 'img',
    imageDigest: `sha256:${'a'.repeat(64)}` as Digest,
    state: 'exited',
    desired: 'running',
    exitCode: 3,
    restarts: 0,
    labels: {},
    ...rest,
    restart: { policy: 'always', initialMs: 1000, maxMs: 60_000, ...restart },
  };
}

const conditions = (v: ContainerView): Record<string, string> => Object.fromEntries(statusOf([v])[0]!.conditions.map((c) => [c.type, `${c.status} ${c.reason}`]));

describe('statusOf: a crashed container', () => {
  const table: Array<[what: string, v: ContainerView, progressing: string, degraded: string]> = [
    ['always, exit not taken yet', view({ restart: { policy: 'always' } }), 'true RestartDue', 'false AsExpected'],
    ['on-failure:3 after 2 restarts', view({ restarts: 2, restart: { policy: 'on-failure', maxRetries: 3 } }), 'true RestartDue', 'false AsExpected'],
    ['on-failure:3 after 3 restarts: given up', view({ restarts: 3, restart: { policy: 'on-failure', maxRetries: 3 } }), 'false Done', 'true RestartsExhausted'],
    ['never', view({ restart: { policy: 'never' } }), 'false Done', 'true Crashed'],
    ['always, its restart failed', view({ lastError: 'no such image', restart: { policy: 'always' } }), 'false Done', 'true RestartsExhausted'],
    ['backing off', view({ state: 'restarting', nextRestartAt: '2026-01-01T00:00:00Z', restart: { policy: 'always' } }), 'true BackOff', 'false AsExpected'],
    ['OOM-killed, to be restarted', view({ exitCode: 137, oomKilled: true, restart: { policy: 'always' } }), 'true RestartDue', 'true OOMKilled'],
    ['stopped by the user', view({ desired: 'stopped', exitCode: 137, restart: { policy: 'always' } }), 'false Done', 'false AsExpected'],
  ];
  for (const [what, v, progressing, degraded] of table) {
    it(what, () => {
      const c = conditions(v);
      assert.equal(c.Progressing, progressing);
      assert.equal(c.Degraded, degraded);
    });
  }
});
