/**
 * The processes one benchmark run left running (container monitors, shims),
 * found in /proc by executable and by a path of the run in their command
 * line (its tmpfs), so another run's or the system's processes never count;
 * their memory; and the mounts under a directory. Linux only, read as root.
 */
import { readdir, readFile, readlink } from 'node:fs/promises';
import { basename } from 'node:path';

/** Pids whose executable is named `exe` and whose command line mentions `mention`. */
export async function processesOf(exe: string, mention: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const path = await readlink(`/proc/${entry}/exe`).catch(() => '');
    if (basename(path) !== exe) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.split('\0').some((arg) => arg.includes(mention))) pids.push(Number(entry));
  }
  return pids;
}

export interface ProcessMemory {
  pid: number;
  /** Resident set (VmRSS): counts shared pages (the binary, libc) in full for every process. */
  rssKiB: number;
  /** Proportional set (Pss): shared pages divided among the processes sharing them, so a sum over processes is honest. */
  pssKiB: number;
}

function field(text: string, name: string): number {
  const m = new RegExp(`^${name}:\\s+(\\d+)\\s+kB$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

/** Current memory of `pid`; undefined when it is gone. */
export async function memoryOf(pid: number): Promise<ProcessMemory | undefined> {
  const [status, rollup] = await Promise.all([
    readFile(`/proc/${pid}/status`, 'utf8').catch(() => undefined),
    readFile(`/proc/${pid}/smaps_rollup`, 'utf8').catch(() => undefined),
  ]);
  if (status === undefined) return undefined;
  return { pid, rssKiB: field(status, 'VmRSS'), pssKiB: rollup === undefined ? NaN : field(rollup, 'Pss') };
}

/** The current resident set (VmRSS) of a running process, KiB; NaN if it is gone. */
export async function vmRSSKiB(pid: number): Promise<number> {
  return (await memoryOf(pid))?.rssKiB ?? NaN;
}

/** Mount points at or below `dir` (from /proc/self/mountinfo; octal escapes decoded). */
export async function mountsUnder(dir: string): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  return info
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => p !== undefined)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p === dir || p.startsWith(prefix));
}
