/** Small order statistics for benchmark samples (no outlier rejection: few samples, report them all). */

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function min(xs: readonly number[]): number {
  return xs.length ? Math.min(...xs) : NaN;
}

export function max(xs: readonly number[]): number {
  return xs.length ? Math.max(...xs) : NaN;
}

/** KiB (as /usr/bin/time and /proc report) to MB (10^6 bytes). */
export function kibToMB(kib: number): number {
  return (kib * 1024) / 1e6;
}
