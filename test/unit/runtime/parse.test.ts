import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { assertInvalid } from '../../helpers/errors.js';
import { parseSignal, SIGNALS } from '../../../src/runtime/signals.js';

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
