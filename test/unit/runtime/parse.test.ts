import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isBerthError } from '../../../src/errors.js';
import { parseBytes } from '../../../src/runtime/quantity.js';
import { parseSignal, SIGNALS } from '../../../src/runtime/signals.js';

const Ki = 1024;
const Mi = Ki * 1024;
const Gi = Mi * 1024;

function assertInvalid(fn: () => unknown, message: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isBerthError(err, 'INVALID_ARGUMENT'), `expected INVALID_ARGUMENT, got ${String(err)}`);
    assert.equal(err.message, message);
    assert.ok(err.hint);
    return true;
  });
}

describe('parseBytes', () => {
  const table: Array<[string, number]> = [
    ['0', 0],
    ['1048576', 1048576],
    ['512k', 512 * Ki],
    ['512K', 512 * Ki],
    ['512kb', 512 * Ki],
    ['64m', 64 * Mi],
    ['64M', 64 * Mi],
    ['64MB', 64 * Mi],
    ['1g', Gi],
    ['1G', Gi],
    ['2t', 2 * 1024 * Gi],
    ['1p', 2 ** 50],
    ['256Mi', 256 * Mi],
    ['1Ki', Ki],
    ['1Gi', Gi],
    ['1GiB', Gi],
    ['1gib', Gi],
    ['1.5Gi', 1.5 * Gi],
    ['1.5g', 1610612736],
    ['0.5k', 512],
    ['.5m', 512 * Ki],
    ['1.3k', 1331],
    ['10 MiB', 10 * Mi],
    [' 64m ', 64 * Mi],
    ['100b', 100],
    ['100B', 100],
  ];
  for (const [s, n] of table) it(`${JSON.stringify(s)} → ${n}`, () => assert.equal(parseBytes(s), n));

  const bad = ['', 'm', '-1', '-64m', '64x', '1e6', '100m3', '1..5g', '1.', '12i', '64mm', '1 g b', 'Infinity', '0x10', '1,5g', '8Ei'];
  for (const s of bad) {
    it(`refuses ${JSON.stringify(s)}`, () => assertInvalid(() => parseBytes(s), `size ${JSON.stringify(s)} is not a byte size`));
  }

  it('refuses sizes beyond a safe integer', () => {
    assertInvalid(() => parseBytes('9p'), 'size "9p" is too large');
    assert.equal(parseBytes('7p'), 7 * 2 ** 50);
  });
});

describe('parseSignal', () => {
  const table: Array<[string, number]> = [
    ['SIGTERM', 15],
    ['TERM', 15],
    ['sigterm', 15],
    ['term', 15],
    ['15', 15],
    [' SIGKILL ', 9],
    ['SIGHUP', 1],
    ['SIGINT', 2],
    ['SIGQUIT', 3],
    ['SIGUSR1', 10],
    ['SIGUSR2', 12],
    ['SIGWINCH', 28],
    ['SIGPWR', 30],
    ['SIGSTOP', 19],
    ['SIGCHLD', 17],
    ['SIGIOT', 6],
    ['SIGRTMIN', 34],
    ['SIGRTMIN+3', 37],
    ['RTMIN+30', 64],
    ['SIGRTMAX', 64],
    ['SIGRTMAX-1', 63],
    ['SIGRTMAX-30', 34],
    ['1', 1],
    ['64', 64],
  ];
  for (const [s, n] of table) it(`${JSON.stringify(s)} → ${n}`, () => assert.equal(parseSignal(s), n));

  it('knows the 31 standard signals, numbered 1 to 31', () => {
    assert.deepEqual([...new Set(Object.values(SIGNALS))].sort((a, b) => a - b), Array.from({ length: 31 }, (_, i) => i + 1));
  });

  const bad = ['', 'SIG', 'FOO', 'SIGFOO', '0', '65', '-1', '1.5', 'SIGRTMIN-1', 'SIGRTMAX+1', 'RTMIN+31', 'SIGTERM2', 'SIG15', '15x'];
  for (const s of bad) {
    it(`refuses ${JSON.stringify(s)}`, () => assertInvalid(() => parseSignal(s), `signal ${JSON.stringify(s)} is not a known signal`));
  }
});
