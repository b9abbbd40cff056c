/**
 * Timing one command the same way for every contender: wall time from spawn
 * to exit (process.hrtime), and peak RSS from GNU time (`/usr/bin/time -f %M`,
 * the child's ru_maxrss in KiB, written to a file so it never mixes with the
 * command's own output). time's own fork/exec is inside the wall time for
 * every contender alike (well under a millisecond).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';

export const GNU_TIME = '/usr/bin/time';

export interface Measured {
  wallMs: number;
  /** Peak resident set of the command (largest of it and its waited-for children), KiB. */
  peakRssKiB: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The last few KiB of stdout and stderr, for error messages. */
  stdoutTail: string;
  stderrTail: string;
}

export interface MeasureOptions {
  /** Where time writes %M; a scratch dir outside the measured filesystem is best. */
  scratchDir: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Keep stdout (tail only); otherwise it goes to /dev/null, so progress output costs no pipe reads. */
  captureStdout?: boolean;
}

const TAIL = 8 * 1024;
const running = new Set<ChildProcess>();
let seq = 0;

function tailOf(s: string, add: Buffer): string {
  const t = s + add.toString();
  return t.length > TAIL ? t.slice(-TAIL) : t;
}

export async function measure(cmd: string, args: readonly string[], opts: MeasureOptions): Promise<Measured> {
  const rssFile = join(opts.scratchDir, `time-${process.pid}-${++seq}.txt`);
  let stdoutTail = '';
  let stderrTail = '';
  const start = process.hrtime.bigint();
  const child = spawn(GNU_TIME, ['-f', '%M', '-o', rssFile, '--', cmd, ...args], {
    env: opts.env ?? process.env,
    cwd: opts.cwd,
    stdio: ['ignore', opts.captureStdout ? 'pipe' : 'ignore', 'pipe'],
    // Own process group, so killMeasured() reaches the command and not only time.
    detached: true,
  });
  running.add(child);
  child.stdout?.on('data', (d: Buffer) => (stdoutTail = tailOf(stdoutTail, d)));
  child.stderr!.on('data', (d: Buffer) => (stderrTail = tailOf(stderrTail, d)));
  let end = start;
  child.once('exit', () => (end = process.hrtime.bigint()));
  // 'close' comes after 'exit' and after the pipes drain, so the tails are complete.
  const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (c, s) => resolve({ code: c, signal: s }));
  }).finally(() => running.delete(child));
  const timeOut = await readFile(rssFile, 'utf8').catch(() => '');
  await rm(rssFile, { force: true });
  // On a signal or non-zero exit, time writes "Command exited with non-zero status N" first; %M is the last line.
  const last = timeOut.trim().split('\n').pop();
  const peakRssKiB = last ? Number(last) : NaN;
  return {
    wallMs: Number(end - start) / 1e6,
    peakRssKiB: Number.isFinite(peakRssKiB) ? peakRssKiB : NaN,
    code,
    signal,
    stdoutTail,
    stderrTail,
  };
}

/** SIGKILLs every command measure() still waits for (each runs in its own process group with its time). */
export function killMeasured(): void {
  for (const child of running) {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** The peak resident set (VmHWM) of a running process, KiB; NaN if it is gone. */
export async function vmHWMKiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const m = /^VmHWM:\s+(\d+)\s+kB$/m.exec(status);
  return m ? Number(m[1]) : NaN;
}
