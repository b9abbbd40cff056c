/**
 * Small pieces every benchmark script shares: option parsing, sizes, the
 * error for a failed measured command, and plain-text table layout.
 */
import type { Measured } from './measure.js';

/** Parses --name's value; prints the problem and calls `usage` (which exits) when it is not a positive integer. */
export function positiveInt(v: string | undefined, name: string, dflt: number, usage: () => never): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`--${name} must be a positive integer, not ${JSON.stringify(v)}`);
    usage();
  }
  return n;
}

export function mib(bytes: number): string {
  return `${(bytes / (1 << 20)).toFixed(1)} MiB`;
}

export function failed(what: string, m: Measured): Error {
  const how = m.signal ? `was killed by ${m.signal}` : `exited with ${m.code}`;
  return new Error(`${what} ${how}:\n${(m.stderrTail || m.stdoutTail).trimEnd().split('\n').slice(-15).join('\n')}`);
}

export function pad(cells: string[][]): string {
  const widths = cells[0]!.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  return cells.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')).join('\n');
}

/** Runs a benchmark's main and turns its result (or its failure, named after the bench) into the exit code. */
export function runBench(name: string, main: () => Promise<number>): void {
  main().then(
    (code) => (process.exitCode = code),
    (err: Error) => {
      console.error(`bench:${name}: ${err.message}`);
      process.exitCode = 1;
    },
  );
}
