import { BerthError } from '../errors.js';

/**
 * Retries of one registry exchange: exponential backoff with full jitter
 * (delay = random() × min(max, base × 2^(n-1))), or the server's Retry-After
 * when it gave one, capped so a hostile or confused server cannot park a pull
 * for hours. Only failures wrapped in RetryableFailure are retried; anything
 * else passes straight through.
 */

export interface RetryPolicy {
  /** Total tries, including the first. */
  attempts: number;
  baseMs: number;
  maxMs: number;
  /** Upper bound on a Retry-After the server asks for. */
  maxRetryAfterMs: number;
  sleep: (ms: number) => Promise<void>;
  random: () => number;
}

export const defaultRetryPolicy: RetryPolicy = {
  attempts: 5,
  baseMs: 200,
  maxMs: 10_000,
  maxRetryAfterMs: 60_000,
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  random: Math.random,
};

/**
 * A failure worth another try. `error` is what the caller sees once the
 * attempts run out; `reason` is a short phrase for logs and events.
 */
export class RetryableFailure extends Error {
  constructor(
    readonly error: BerthError,
    readonly reason: string,
    readonly retryAfterMs?: number,
  ) {
    super(error.message);
    this.name = 'RetryableFailure';
  }
}

export interface RetryNotice {
  /** The attempt about to be made (2 for the first retry). */
  attempt: number;
  delayMs: number;
  reason: string;
}

export function backoffDelay(retry: number, policy: Pick<RetryPolicy, 'baseMs' | 'maxMs' | 'random'>): number {
  const ceiling = Math.min(policy.maxMs, policy.baseMs * 2 ** (retry - 1));
  return Math.floor(policy.random() * ceiling);
}

/** Retry-After as milliseconds: delta-seconds or an HTTP-date; undefined when absent or unparseable. */
export function parseRetryAfter(value: string | undefined, now: number = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  if (Number.isNaN(t)) return undefined;
  return Math.max(0, t - now);
}

export async function withRetry<T>(
  policy: RetryPolicy,
  op: (attempt: number) => Promise<T>,
  onRetry: (notice: RetryNotice) => void,
  signal?: AbortSignal,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await op(attempt);
    } catch (err) {
      if (!(err instanceof RetryableFailure)) throw err;
      if (attempt >= policy.attempts || signal?.aborted) throw gaveUp(err.error, attempt);
      const delayMs = err.retryAfterMs !== undefined ? Math.min(err.retryAfterMs, policy.maxRetryAfterMs) : backoffDelay(attempt, policy);
      onRetry({ attempt: attempt + 1, delayMs, reason: err.reason });
      await sleepUnlessAborted(policy, delayMs, signal);
      if (signal?.aborted) throw new BerthError('CANCELLED', `${err.error.message} (cancelled while waiting to retry)`, { cause: signal.reason });
    }
  }
}

/** A cancelled operation should not sit out a 60-second Retry-After. */
async function sleepUnlessAborted(policy: RetryPolicy, ms: number, signal: AbortSignal | undefined): Promise<void> {
  if (!signal) return policy.sleep(ms);
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<void>((resolve) => {
    onAbort = resolve;
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    await Promise.race([policy.sleep(ms), aborted]);
  } finally {
    if (onAbort) signal.removeEventListener('abort', onAbort);
  }
}

function gaveUp(err: BerthError, attempts: number): BerthError {
  if (attempts <= 1) return err;
  return new BerthError(err.code, `${err.message} (gave up after ${attempts} attempts)`, {
    cause: err.cause,
    ...(err.hint !== undefined ? { hint: err.hint } : {}),
    details: { ...err.details, attempts },
  });
}
