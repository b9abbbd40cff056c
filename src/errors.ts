/**
 * The one error type of berth. Every failure that leaves a module is a
 * BerthError with a code from a closed set; callers branch on `code`, never on
 * message text. Adapters translate foreign errors (fs, HTTP, LMDB, runc) into
 * BerthErrors where they enter. Messages say what is wrong and where (host,
 * ref, digest expected and found); `hint` says what the user can do about it.
 * Messages and hints must never contain credentials.
 */

export const ErrorCodes = [
  'INVALID_ARGUMENT', // bad flag, bad value from the user
  'INVALID_REFERENCE', // image reference does not parse
  'NOT_FOUND', // image, blob, manifest, ingest, container absent
  'ALREADY_EXISTS',
  'DIGEST_MISMATCH', // bytes do not hash to the expected digest
  'SIZE_MISMATCH', // byte count differs from the descriptor
  'TRUNCATED', // a stream ended before its declared size
  'TOO_LARGE', // a manifest or config above its cap
  'UNSUPPORTED', // schema1, unknown media type, unknown algorithm
  'NO_MATCHING_PLATFORM',
  'UNAUTHORIZED', // 401: missing or wrong credentials
  'FORBIDDEN', // 403
  'RATE_LIMITED', // 429 after retries
  'UNAVAILABLE', // host unreachable, 5xx, connection reset: worth retrying later
  'INVALID_MANIFEST', // malformed OCI manifest/index/config JSON
  'CORRUPT', // stored data fails verification
  'LOCKED', // another writer holds the lock
  'FAILED_PRECONDITION', // the operation needs another state first (a snapshot with children, a running container)
  'TIMEOUT',
  'CANCELLED',
  'INTERNAL', // a bug in berth
] as const;

export type ErrorCode = (typeof ErrorCodes)[number];

export interface BerthErrorOptions {
  cause?: unknown;
  hint?: string;
  /** Structured context (host, ref, digest...). Never credentials. */
  details?: Record<string, unknown>;
}

export class BerthError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: BerthErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'BerthError';
    this.code = code;
    this.hint = options.hint;
    this.details = options.details ?? {};
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, hint: this.hint, ...(Object.keys(this.details).length ? { details: this.details } : {}) };
  }
}

export function isBerthError(err: unknown, code?: ErrorCode): err is BerthError {
  return err instanceof BerthError && (code === undefined || err.code === code);
}

/** Wraps anything thrown into a BerthError, keeping BerthErrors as they are. */
export function asBerthError(err: unknown, fallback: ErrorCode = 'INTERNAL', message?: string): BerthError {
  if (err instanceof BerthError) return err;
  const text = err instanceof Error ? err.message : String(err);
  return new BerthError(fallback, message ? `${message}: ${text}` : text, { cause: err });
}

const TRANSIENT: ReadonlySet<ErrorCode> = new Set(['UNAVAILABLE', 'RATE_LIMITED', 'TIMEOUT', 'TRUNCATED']);

/** Codes worth retrying: the condition may clear by itself. */
export function isTransientCode(code: ErrorCode): boolean {
  return TRANSIENT.has(code);
}

export function isTransient(err: unknown): boolean {
  return err instanceof BerthError && isTransientCode(err.code);
}
