import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decideRestart, DEFAULT_RESTART, parseRestartPolicy, RESET_AFTER_MS, type RestartDecision } from '../../../src/containers/restart.js';
import type { RestartPolicy } from '../../../src/metadata/store.js';

const now = new Date('2024-05-01T12:00:00.000Z');
/** A start `ms` before now. */
const startedAgo = (ms: number): string => new Date(now.getTime() - ms).toISOString();
/** random() = 0.5 means no jitter. */
const noJitter = (): number => 0.5;

const policy = (p: Partial<RestartPolicy>): RestartPolicy => ({ ...DEFAULT_RESTART, ...p });

describe('parseRestartPolicy', () => {
  const table: Array<[string, ReturnType<typeof parseRestartPolicy>]> = [
    ['never', { policy: 'never' }],
    ['no', { policy: 'never' }],
    ['always', { policy: 'always' }],
    ['on-failure', { policy: 'on-failure' }],
    // Docker reads a limit of 0 as none.
    ['on-failure:0', { policy: 'on-failure' }],
    ['on-failure:2', { policy: 'on-failure', maxRetries: 2 }],
    ['on-failure:15', { policy: 'on-failure', maxRetries: 15 }],
    [' always ', { policy: 'always' }],
    ['always:3', undefined],
    ['never:1', undefined],
    ['no:1', undefined],
    ['on-failure:', undefined],
    ['on-failure:-1', undefined],
    ['on-failure:x', undefined],
    ['unless-stopped', undefined],
    ['Always', undefined],
    ['', undefined],
  ];
  for (const [text, want] of table) {
    it(`${JSON.stringify(text)} → ${JSON.stringify(want)}`, () => assert.deepEqual(parseRestartPolicy(text), want));
  }
});

describe('decideRestart', () => {
  const cases: Array<{ what: string; policy: RestartPolicy; restartCount: number; backoffMs?: number; ranMs?: number; exitCode: number; want: RestartDecision }> = [
    { what: 'never restarts a failure', policy: policy({ policy: 'never' }), restartCount: 0, exitCode: 1, want: { restart: false, reason: 'restart policy is never', gaveUp: false } },
    { what: 'never restarts a success', policy: policy({ policy: 'never' }), restartCount: 0, exitCode: 0, want: { restart: false, reason: 'restart policy is never', gaveUp: false } },
    {
      what: 'on-failure does not restart exit 0',
      policy: policy({ policy: 'on-failure' }),
      restartCount: 0,
      exitCode: 0,
      want: { restart: false, reason: 'exited with code 0 and the restart policy is on-failure', gaveUp: false },
    },
    { what: 'on-failure restarts exit 3 after initialMs', policy: policy({ policy: 'on-failure' }), restartCount: 0, exitCode: 3, want: { restart: true, delayMs: 1000, backoffMs: 1000, attempt: 1 } },
    { what: 'on-failure restarts a signal death (137)', policy: policy({ policy: 'on-failure' }), restartCount: 0, exitCode: 137, want: { restart: true, delayMs: 1000, backoffMs: 1000, attempt: 1 } },
    { what: 'on-failure without max keeps restarting', policy: policy({ policy: 'on-failure' }), restartCount: 50, backoffMs: 60_000, exitCode: 1, want: { restart: true, delayMs: 60_000, backoffMs: 60_000, attempt: 51 } },
    { what: 'on-failure:2 restarts the first time', policy: policy({ policy: 'on-failure', maxRetries: 2 }), restartCount: 0, exitCode: 3, want: { restart: true, delayMs: 1000, backoffMs: 1000, attempt: 1 } },
    { what: 'on-failure:2 restarts the second time, doubled', policy: policy({ policy: 'on-failure', maxRetries: 2 }), restartCount: 1, backoffMs: 1000, exitCode: 3, want: { restart: true, delayMs: 2000, backoffMs: 2000, attempt: 2 } },
    {
      what: 'on-failure:2 gives up after 2 restarts',
      policy: policy({ policy: 'on-failure', maxRetries: 2 }),
      restartCount: 2,
      backoffMs: 2000,
      exitCode: 3,
      want: { restart: false, reason: 'gave up after 2 restarts (on-failure:2)', gaveUp: true },
    },
    {
      what: 'on-failure:2 does not give up on exit 0: it just does not restart',
      policy: policy({ policy: 'on-failure', maxRetries: 2 }),
      restartCount: 2,
      exitCode: 0,
      want: { restart: false, reason: 'exited with code 0 and the restart policy is on-failure', gaveUp: false },
    },
    { what: 'always restarts exit 0', policy: policy({ policy: 'always' }), restartCount: 0, exitCode: 0, want: { restart: true, delayMs: 1000, backoffMs: 1000, attempt: 1 } },
    { what: 'always ignores maxRetries', policy: policy({ policy: 'always', maxRetries: 1 }), restartCount: 5, backoffMs: 4000, exitCode: 1, want: { restart: true, delayMs: 8000, backoffMs: 8000, attempt: 6 } },
    { what: 'backoff doubles', policy: policy({ policy: 'always' }), restartCount: 3, backoffMs: 4000, exitCode: 1, want: { restart: true, delayMs: 8000, backoffMs: 8000, attempt: 4 } },
    { what: 'backoff stops at maxMs', policy: policy({ policy: 'always' }), restartCount: 6, backoffMs: 32_000, exitCode: 1, want: { restart: true, delayMs: 60_000, backoffMs: 60_000, attempt: 7 } },
    { what: 'backoff stays at maxMs', policy: policy({ policy: 'always' }), restartCount: 7, backoffMs: 60_000, exitCode: 1, want: { restart: true, delayMs: 60_000, backoffMs: 60_000, attempt: 8 } },
    { what: 'a custom initial and max', policy: policy({ policy: 'always', initialMs: 250, maxMs: 700 }), restartCount: 0, exitCode: 1, want: { restart: true, delayMs: 250, backoffMs: 250, attempt: 1 } },
    { what: 'a custom max caps the doubling', policy: policy({ policy: 'always', initialMs: 250, maxMs: 700 }), restartCount: 2, backoffMs: 500, exitCode: 1, want: { restart: true, delayMs: 700, backoffMs: 700, attempt: 3 } },
    {
      what: 'a run just short of 10 minutes keeps doubling',
      policy: policy({ policy: 'always' }),
      restartCount: 3,
      backoffMs: 8000,
      ranMs: RESET_AFTER_MS - 1,
      exitCode: 1,
      want: { restart: true, delayMs: 16_000, backoffMs: 16_000, attempt: 4 },
    },
    {
      what: 'a run of 10 minutes resets the backoff (the restart count stays)',
      policy: policy({ policy: 'always' }),
      restartCount: 3,
      backoffMs: 60_000,
      ranMs: RESET_AFTER_MS,
      exitCode: 1,
      want: { restart: true, delayMs: 1000, backoffMs: 1000, attempt: 4 },
    },
    {
      what: 'a reset does not lift on-failure:max',
      policy: policy({ policy: 'on-failure', maxRetries: 3 }),
      restartCount: 3,
      backoffMs: 4000,
      ranMs: RESET_AFTER_MS * 2,
      exitCode: 1,
      want: { restart: false, reason: 'gave up after 3 restarts (on-failure:3)', gaveUp: true },
    },
  ];
  for (const c of cases) {
    it(c.what, () => {
      const status = {
        restartCount: c.restartCount,
        ...(c.backoffMs !== undefined ? { backoffMs: c.backoffMs } : {}),
        ...(c.ranMs !== undefined ? { startedAt: startedAgo(c.ranMs) } : { startedAt: startedAgo(1000) }),
      };
      assert.deepEqual(decideRestart(c.policy, status, c.exitCode, now, noJitter), c.want);
    });
  }

  it('a first run without startedAt (never started) starts at initialMs', () => {
    assert.deepEqual(decideRestart(policy({ policy: 'always' }), { restartCount: 0 }, 1, now, noJitter), { restart: true, delayMs: 1000, backoffMs: 1000, attempt: 1 });
  });

  it('jitters the delay by at most ±10% around the backoff, which itself is not jittered', () => {
    const p = policy({ policy: 'always' });
    const status = { restartCount: 2, backoffMs: 2000, startedAt: startedAgo(5000) };
    const at = (r: number): RestartDecision => decideRestart(p, status, 1, now, () => r);
    assert.deepEqual(at(0), { restart: true, delayMs: 3600, backoffMs: 4000, attempt: 3 });
    assert.deepEqual(at(0.999999), { restart: true, delayMs: 4400, backoffMs: 4000, attempt: 3 });
    assert.deepEqual(at(0.75), { restart: true, delayMs: 4200, backoffMs: 4000, attempt: 3 });
    // With the real Math.random: always within bounds, and not all the same.
    const seen = new Set<number>();
    for (let i = 0; i < 500; i++) {
      const d = decideRestart(p, status, 1, now);
      assert.ok(d.restart);
      assert.ok(d.delayMs >= 3600 && d.delayMs <= 4400, `delay ${d.delayMs}`);
      assert.equal(d.backoffMs, 4000);
      seen.add(d.delayMs);
    }
    assert.ok(seen.size > 10, `only ${seen.size} distinct delays`);
  });

  it('jitter never makes a delay negative, and a zero backoff stays zero', () => {
    const d = decideRestart(policy({ policy: 'always', initialMs: 0, maxMs: 0 }), { restartCount: 0 }, 1, now, () => 0);
    assert.deepEqual(d, { restart: true, delayMs: 0, backoffMs: 0, attempt: 1 });
  });
});
