import { BerthError } from '../errors.js';
import { parseDuration } from '../oci/quantity.js';

/** A duration option (`--timeout 30s`), in milliseconds; `fallback` when absent. */
export function parseDurationOption(value: unknown, flag: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'string') throw new BerthError('INVALID_ARGUMENT', `${flag} needs a value such as 30s or 2m`);
  try {
    return parseDuration(value);
  } catch (err) {
    throw new BerthError('INVALID_ARGUMENT', `${flag} ${JSON.stringify(value)}: ${(err as Error).message}`, { hint: 'use a duration such as 500ms, 30s, 2m or 1h' });
  }
}
