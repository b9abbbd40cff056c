/**
 * Concurrency helpers for image operations: a counting semaphore bounding
 * parallel downloads, and a single-flight map so that concurrent requests for
 * the same key (a blob digest, an image name) share one piece of work.
 */

export class Semaphore {
  private active = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(private readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`concurrency limit must be a positive integer, got ${limit}`);
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.active++;
    try {
      return await fn();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }
}

export class SingleFlight<T> {
  private readonly inflight = new Map<string, Promise<T>>();

  /** Runs fn for key unless a run for key is in flight, in which case its result is shared. */
  do(key: string, fn: () => Promise<T>): Promise<T> {
    const existing = this.inflight.get(key);
    if (existing) return existing;
    const p = fn().finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }
}
