/**
 * Teardown for benchmark scripts: a stack of undo steps (unmount, stop a
 * daemon, remove a dir) run last-in first-out, once, on normal exit, on error
 * and on SIGINT/SIGTERM. A step that fails is reported and the rest still run,
 * so one stuck mount does not leak the registry or a containerd.
 */

export type Undo = () => Promise<void> | void;

export class Cleanup {
  private readonly steps: Array<{ what: string; undo: Undo }> = [];
  private running: Promise<void> | undefined;

  /** True once run() has started: callers stop starting new work (and so new mounts). */
  get closed(): boolean {
    return this.running !== undefined;
  }

  /** Registers an undo step; the returned function runs it early (and removes it from the stack). */
  defer(what: string, undo: Undo): () => Promise<void> {
    const step = { what, undo };
    this.steps.push(step);
    return async () => {
      const i = this.steps.indexOf(step);
      if (i < 0) return;
      this.steps.splice(i, 1);
      await step.undo();
    };
  }

  /** Runs every pending step, newest first; once (later calls return the same promise). */
  run(): Promise<void> {
    return (this.running ??= (async () => {
      for (let step = this.steps.pop(); step; step = this.steps.pop()) {
        try {
          await step.undo();
        } catch (err) {
          console.error(`cleanup: ${step.what} failed: ${(err as Error).message}`);
        }
      }
    })());
  }

  /**
   * On SIGINT or SIGTERM: call `first` (e.g. kill the measured command, so
   * its files are closed before unmounting), run the stack, exit 128+signal.
   * Install this before starting helpers that add their own signal hooks only
   * when nobody else listens (test/helpers/registry.ts does).
   */
  onSignals(first?: () => void): void {
    for (const [sig, n] of [['SIGINT', 2], ['SIGTERM', 15]] as const) {
      process.once(sig, () => {
        console.error(`\n${sig}: cleaning up`);
        first?.();
        void this.run().finally(() => process.exit(128 + n));
      });
    }
  }
}
