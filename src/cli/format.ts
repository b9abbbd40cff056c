/** Text rendering for the terminal: tables, sizes, durations, errors. */
import { isBerthError } from '../errors.js';

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const m = Math.floor(ms / 60_000);
  return `${m}m${Math.round((ms % 60_000) / 1000)}s`;
}

/** "1 file", "2 files": a count with its noun, plural unless one. */
export function counted(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

export function shortDigest(d: string): string {
  const i = d.indexOf(':');
  return d.slice(i + 1, i + 13);
}

/** Left-aligned columns separated by three spaces, header in capitals. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('   ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

/** One error for humans: message, then hint; the stack only when asked for. */
export function formatError(err: unknown, withStack: boolean): string {
  const lines: string[] = [];
  if (isBerthError(err)) {
    lines.push(`berth: error: ${err.message}`);
    if (err.hint) lines.push(`  hint: ${err.hint}`);
  } else {
    lines.push(`berth: internal error: ${err instanceof Error ? err.message : String(err)}`);
    lines.push('  hint: this is a bug in berth; rerun with --log-level debug and report the output');
  }
  if (withStack && err instanceof Error && err.stack) lines.push(err.stack);
  return lines.join('\n') + '\n';
}
