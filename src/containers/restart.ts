import type { ContainerStatus, RestartPolicy } from '../metadata/store.js';

/**
 * The restart policy, pure: given how a run ended, whether and when to
 * start the container again. Docker's policies (never, on-failure[:max],
 * always) with the backoff of kubelet's CrashLoopBackOff: the first delay
 * `initialMs`, doubled per consecutive restart up to `maxMs`, back to
 * `initialMs` once a run lasted RESET_AFTER_MS, and a ±10% jitter so
 * containers that crash together do not restart in lockstep.
 */

export const DEFAULT_RESTART: RestartPolicy = { policy: 'never', initialMs: 1000, maxMs: 60_000 };

/** A run this long counts as healthy: the next crash starts the backoff over. */
export const RESET_AFTER_MS = 10 * 60 * 1000;

const JITTER = 0.1;

export type RestartDecision =
  | { restart: true; delayMs: number; backoffMs: number; attempt: number }
  | { restart: false; reason: string; gaveUp: boolean };

export function decideRestart(
  policy: RestartPolicy,
  status: Pick<ContainerStatus, 'restartCount' | 'backoffMs' | 'startedAt'>,
  exitCode: number,
  now: Date,
  random: () => number = Math.random,
): RestartDecision {
  if (policy.policy === 'never') return { restart: false, reason: 'restart policy is never', gaveUp: false };
  if (policy.policy === 'on-failure') {
    if (exitCode === 0) return { restart: false, reason: 'exited with code 0 and the restart policy is on-failure', gaveUp: false };
    if (policy.maxRetries !== undefined && status.restartCount >= policy.maxRetries) {
      return { restart: false, reason: `gave up after ${status.restartCount} restarts (on-failure:${policy.maxRetries})`, gaveUp: true };
    }
  }
  const ranMs = status.startedAt ? now.getTime() - Date.parse(status.startedAt) : 0;
  const healthy = ranMs >= RESET_AFTER_MS;
  const backoffMs = healthy || status.backoffMs === undefined ? policy.initialMs : Math.min(policy.maxMs, status.backoffMs * 2);
  const delayMs = Math.max(0, Math.round(backoffMs * (1 + JITTER * (2 * random() - 1))));
  return { restart: true, delayMs, backoffMs, attempt: status.restartCount + 1 };
}

/**
 * Parses Docker's policy syntax: "never" (or "no"), "always",
 * "on-failure" or "on-failure:N" (N = 0: no limit, as in Docker).
 * undefined when it does not parse.
 */
export function parseRestartPolicy(text: string): Pick<RestartPolicy, 'policy' | 'maxRetries'> | undefined {
  const m = /^(no|never|always|on-failure)(?::(\d+))?$/.exec(text.trim());
  if (!m) return undefined;
  if (m[2] !== undefined && m[1] !== 'on-failure') return undefined;
  const policy = m[1] === 'no' ? 'never' : (m[1] as RestartPolicy['policy']);
  // Docker reads on-failure:0 as no limit.
  return m[2] === undefined || Number(m[2]) === 0 ? { policy } : { policy, maxRetries: Number(m[2]) };
}
