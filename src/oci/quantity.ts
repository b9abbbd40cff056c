import { BerthError } from '../errors.js';

/**
 * Quantities as users write them in flags and manifests: byte sizes and
 * durations. Pure; every refusal is a BerthError INVALID_ARGUMENT with a hint.
 */

/**
 * Byte sizes as users write them for Docker (`-m 64m`, `1g`, `512k`, `1.5GB`)
 * and Kubernetes (`256Mi`, `1.5Gi`), case-insensitive. Every unit is binary
 * (k = 1024), as Docker reads them, with or without the `i` and a trailing
 * `b`. Kubernetes reads `M`, `G` without `i` as powers of 1000; berth does
 * not, so `1G` here is 1 GiB as in `docker run -m 1G` (7% more than a
 * Kubernetes `1G`). Kubernetes' `m` (milli) and exponent forms (`1e6`) are
 * not byte sizes and are refused. A fraction is rounded down to a whole byte.
 */

const UNITS: Readonly<Record<string, number>> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50 };

export function parseBytes(s: string): number {
  const m = /^(\d+(?:\.\d+)?|\.\d+) ?([kmgtp]?)(i?)(b?)$/i.exec(s.trim());
  // A bare "i" (as in "12i") is no unit.
  if (!m || (m[3] && !m[2])) {
    throw new BerthError('INVALID_ARGUMENT', `size ${JSON.stringify(s)} is not a byte size`, {
      hint: 'write a number of bytes with an optional unit: 1048576, 512k, 64m, 1g, 256Mi, 1.5Gi',
    });
  }
  const bytes = Math.floor(Number(m[1]) * UNITS[m[2]!.toLowerCase()]!);
  if (!Number.isSafeInteger(bytes)) {
    throw new BerthError('INVALID_ARGUMENT', `size ${JSON.stringify(s)} is too large`, { hint: `the largest size is ${Number.MAX_SAFE_INTEGER} bytes` });
  }
  return bytes;
}

/**
 * Durations as Go's time.ParseDuration and Docker write them: a sequence of
 * numbers with units ms, s, m, h ("500ms", "1s", "2m", "1h30m", "1.5s"),
 * case-sensitive (`m` is minutes, never months or milli). A bare number is
 * seconds ("10" = 10 s), as in Docker's `--stop-timeout 10` and Kubernetes'
 * `terminationGracePeriodSeconds`. Returns whole milliseconds, a fraction
 * rounded down. Negative durations, µs/ns and days are refused.
 */
const DURATION_UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const DURATION_PART = /(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h)/y;

export function parseDuration(s: string): number {
  const text = s.trim();
  const bad = (): BerthError =>
    new BerthError('INVALID_ARGUMENT', `duration ${JSON.stringify(s)} is not a duration`, {
      hint: 'write a number with a unit: 500ms, 10s, 2m, 1h, 1m30s; a bare number is seconds',
    });
  let ms: number;
  if (/^(\d+(?:\.\d+)?|\.\d+)$/.test(text)) {
    ms = Number(text) * 1000;
  } else {
    if (text === '') throw bad();
    ms = 0;
    DURATION_PART.lastIndex = 0;
    while (DURATION_PART.lastIndex < text.length) {
      const m = DURATION_PART.exec(text);
      if (!m) throw bad();
      ms += Number(m[1]) * DURATION_UNITS[m[2]!]!;
    }
  }
  ms = Math.floor(ms);
  if (!Number.isSafeInteger(ms)) {
    throw new BerthError('INVALID_ARGUMENT', `duration ${JSON.stringify(s)} is too long`, { hint: `the longest duration is ${Number.MAX_SAFE_INTEGER} ms` });
  }
  return ms;
}
