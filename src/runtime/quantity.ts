import { BerthError } from '../errors.js';

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
