import { spawn } from 'node:child_process';

/**
 * Running a host tool (mount, umount, cp, rm, runc) to completion with its
 * output captured. node:child_process rather than execa: importing execa
 * costs 200–300 ms of start-up, which is most of what a short `berth run`
 * takes, and these calls need nothing beyond exit code and output.
 */

export interface CommandResult {
  /** The exit code; 128 + n when killed by signal n; undefined when the tool could not be started (then `error`). */
  code: number | undefined;
  stdout: string;
  stderr: string;
  error?: Error;
}

/** Output beyond this is dropped: the tools run here print little, and a runaway one must not fill memory. */
const MAX_OUTPUT = 1 << 20;

export interface RunOptions {
  cwd?: string;
  /** Descriptors for stdin, stdout, stderr instead of ignore/capture/capture (exec hands over the terminal). */
  stdio?: [number | 'ignore', number | 'pipe' | 'ignore', number | 'pipe' | 'ignore'];
}

/** Never rejects: a tool that cannot start gives code undefined and `error`. */
export function runCommand(file: string, args: readonly string[], opts: RunOptions = {}): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child = spawn(file, args, { stdio: opts.stdio ?? ['ignore', 'pipe', 'pipe'], ...(opts.cwd ? { cwd: opts.cwd } : {}) });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const capture = (into: Buffer[]) => {
      let n = 0;
      return (b: Buffer): void => {
        if (n < MAX_OUTPUT) into.push(b);
        n += b.length;
      };
    };
    child.stdout?.on('data', capture(out));
    child.stderr?.on('data', capture(err));
    let failed: Error | undefined;
    child.on('error', (e) => (failed = e));
    child.on('close', (code, signal) => {
      const text = (b: Buffer[]): string => Buffer.concat(b).toString('utf8');
      if (failed && code === null) resolve({ code: undefined, stdout: text(out), stderr: text(err), error: failed });
      else resolve({ code: code ?? 128 + signalNumber(signal), stdout: text(out), stderr: text(err) });
    });
  });
}

const SIGNALS: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGABRT: 6, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGTERM: 15 };

function signalNumber(signal: NodeJS.Signals | null): number {
  return (signal && SIGNALS[signal]) ?? 0;
}
