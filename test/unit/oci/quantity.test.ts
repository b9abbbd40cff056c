import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { assertInvalid } from '../../helpers/errors.js';
import { parseBytes, parseDuration } from '../../../src/oci/quantity.js';
import * as runtime from '../../../src/runtime/index.js';

const Ki = 1024;
const Mi = Ki * 1024;
const Gi = Mi * 1024;

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

describe('parseDuration', () => {
  const table: Array<[string, number]> = [
    ['0', 0],
    ['10', 10_000],
    ['1.5', 1500],
    ['500ms', 500],
    ['1s', 1000],
    ['1.5s', 1500],
    ['.5s', 500],
    ['2m', 120_000],
    ['1h', 3_600_000],
    ['1h30m', 5_400_000],
    ['1m30s', 90_000],
    ['1s500ms', 1500],
    ['0s', 0],
    [' 60s ', 60_000],
    ['1.0005s', 1000],
  ];
  for (const [s, n] of table) it(`${JSON.stringify(s)} → ${n} ms`, () => assert.equal(parseDuration(s), n));

  const bad = ['', 's', '-1s', '1 s', '1S', '1d', '10us', '1ns', '1sec', '1m 30s', '1.s', '1e3', 'Infinity', '0x10', '1,5s', 'ms10'];
  for (const s of bad) {
    it(`refuses ${JSON.stringify(s)}`, () => assertInvalid(() => parseDuration(s), `duration ${JSON.stringify(s)} is not a duration`));
  }

  it('refuses durations beyond a safe integer of milliseconds', () => {
    assertInvalid(() => parseDuration('9999999999999h'), 'duration "9999999999999h" is too long');
  });
});

describe('runtime/ re-exports parseBytes from oci/', () => {
  it('is the same function', () => assert.equal(runtime.parseBytes, parseBytes));
});
