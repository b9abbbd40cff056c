/**
 * Small pieces every benchmark script shares: option parsing, sizes, the
 * error for a failed measured command, and plain-text table layout.
 */
import { parseArgs } from 'node:util';
import type { Measured } from './measure.js';

type OptionTypes = Record<string, { type: 'string' | 'boolean' }>;
type OptionValues<O extends OptionTypes> = { [K in keyof O]?: O[K]['type'] extends 'string' ? string : boolean };

/**
 * A benchmark's command line, parsed with `options` plus -h/--help. A bad
 * line or -h prints the problem and `usage: <line>`, then exits 2. Returns
 * the values and that usage function, for the bench's own checks.
 */
export function benchArgs<O extends OptionTypes>(line: string, options: O): { values: OptionValues<O>; usage: () => never } {
  const usage = (): never => {
    console.error(`usage: ${line}`);
    process.exit(2);
  };
  let values: OptionValues<O> & { help?: boolean };
  try {
    values = parseArgs({ options: { ...options, help: { type: 'boolean', short: 'h' } } }).values as OptionValues<O> & { help?: boolean };
  } catch (err) {
    console.error((err as Error).message);
    return usage();
  }
  if (values.help) usage();
  return { values, usage };
}

/** The names a comma list picks from `all`, in `all`'s order (all when absent); an unknown one prints the choices and calls `usage`. */
export function chosen<T extends string>(v: string | undefined, all: readonly T[], name: string, usage: () => never, alias: (s: string) => string = (s) => s): T[] {
  if (v === undefined) return [...all];
  const picked = v.split(',').map((s) => alias(s.trim())).filter(Boolean);
  const unknown = picked.filter((s) => !(all as readonly string[]).includes(s));
  if (unknown.length) {
    console.error(`--${name}: unknown ${unknown.join(', ')}; choose from ${all.join(', ')}`);
    usage();
  }
  return all.filter((x) => picked.includes(x));
}

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
