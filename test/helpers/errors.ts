import assert from 'node:assert/strict';
import { isBerthError } from '../../src/errors.js';

/** fn throws INVALID_ARGUMENT with exactly `message`, and a hint. */
export function assertInvalid(fn: () => unknown, message: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isBerthError(err, 'INVALID_ARGUMENT'), `expected INVALID_ARGUMENT, got ${String(err)}`);
    assert.equal(err.message, message);
    assert.ok(err.hint);
    return true;
  });
}
