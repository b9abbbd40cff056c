import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BerthError } from '../../../src/errors.js';
import { formatPlatform, hostPlatform, normalizePlatform, parsePlatform, platformMatcher, type Platform } from '../../../src/oci/platform.js';

const P = (s: string): Platform => {
  const [os, architecture, variant] = s.split('/') as [string, string, string?];
  return { os, architecture, ...(variant === undefined ? {} : { variant }) };
};

describe('parsePlatform', () => {
  // input → the normalised platform, formatted.
  const table: Array<[string, string]> = [
    ['linux/amd64', 'linux/amd64'],
    ['amd64', 'linux/amd64'],
    ['linux/x86_64', 'linux/amd64'],
    ['linux/x86-64', 'linux/amd64'],
    ['Linux/AMD64', 'linux/amd64'],
    ['linux/amd64/v1', 'linux/amd64'],
    ['linux/amd64/v3', 'linux/amd64/v3'],
    ['linux/arm64', 'linux/arm64'],
    ['linux/arm64/v8', 'linux/arm64'],
    ['linux/aarch64', 'linux/arm64'],
    ['aarch64', 'linux/arm64'],
    ['linux/arm64/8', 'linux/arm64'],
    ['linux/arm64/v9.0', 'linux/arm64/v9'],
    ['linux/arm', 'linux/arm/v7'],
    ['linux/arm/7', 'linux/arm/v7'],
    ['linux/arm/v6', 'linux/arm/v6'],
    ['linux/arm/5', 'linux/arm/v5'],
    ['linux/armhf', 'linux/arm/v7'],
    ['linux/armel', 'linux/arm/v6'],
    ['linux/i386', 'linux/386'],
    ['linux/i686', 'linux/386'],
    ['linux/x86', 'linux/386'],
    ['linux/386', 'linux/386'],
    ['darwin/arm64', 'darwin/arm64'],
    ['windows/amd64', 'windows/amd64'],
    ['linux/riscv64', 'linux/riscv64'],
    ['linux/s390x', 'linux/s390x'],
    ['linux/ppc64le', 'linux/ppc64le'],
  ];
  for (const [input, want] of table) it(`${input} → ${want}`, () => assert.equal(formatPlatform(parsePlatform(input)), want));

  it('returns no variant key when there is none', () => assert.deepEqual(parsePlatform('linux/arm64/v8'), { os: 'linux', architecture: 'arm64' }));

  const bad: Array<[string, string]> = [
    ['', 'a part is empty'],
    ['linux/', 'a part is empty'],
    ['/amd64', 'a part is empty'],
    ['linux//v7', 'a part is empty'],
    ['linux/arm/v7/extra', 'more than three'],
    ['linux/amd 64', 'may contain only'],
    ['linux/../etc', 'may contain only'],
    ['linux', 'operating system'],
  ];
  for (const [input, fragment] of bad) {
    it(`rejects ${JSON.stringify(input)}`, () => {
      assert.throws(() => parsePlatform(input), (err: unknown) => {
        assert.ok(err instanceof BerthError);
        assert.equal(err.code, 'INVALID_ARGUMENT');
        assert.ok(err.message.includes(JSON.stringify(input)), err.message);
        assert.ok(err.message.includes(fragment), `${err.message} should contain ${fragment}`);
        assert.ok(err.hint);
        return true;
      });
    });
  }
});

describe('normalizePlatform', () => {
  const table: Array<[Platform, Platform]> = [
    [{ os: 'Linux', architecture: 'X86_64' }, { os: 'linux', architecture: 'amd64' }],
    [{ os: 'linux', architecture: 'arm64', variant: 'v8' }, { os: 'linux', architecture: 'arm64' }],
    [{ os: 'linux', architecture: 'arm64', variant: '' }, { os: 'linux', architecture: 'arm64' }],
    [{ os: 'linux', architecture: 'arm' }, { os: 'linux', architecture: 'arm', variant: 'v7' }],
    [{ os: 'linux', architecture: 'armhf', variant: 'v5' }, { os: 'linux', architecture: 'arm', variant: 'v7' }],
    [{ os: 'linux', architecture: 'i386', variant: 'x' }, { os: 'linux', architecture: '386' }],
    [{ os: 'darwin', architecture: 'amd64' }, { os: 'darwin', architecture: 'amd64' }],
    [{ os: 'linux', architecture: 'mips64le', variant: 'V2' }, { os: 'linux', architecture: 'mips64le', variant: 'v2' }],
  ];
  for (const [input, want] of table) it(`${JSON.stringify(input)}`, () => assert.deepEqual(normalizePlatform(input), want));

  it('is idempotent', () => {
    for (const [input] of table) assert.deepEqual(normalizePlatform(normalizePlatform(input)), normalizePlatform(input));
  });
});

describe('formatPlatform', () => {
  it('formats with and without variant', () => {
    assert.equal(formatPlatform({ os: 'linux', architecture: 'arm', variant: 'v7' }), 'linux/arm/v7');
    assert.equal(formatPlatform({ os: 'linux', architecture: 'amd64' }), 'linux/amd64');
  });
});

describe('hostPlatform', () => {
  const table: Array<[string, string, string]> = [
    ['linux', 'x64', 'linux/amd64'],
    ['linux', 'arm64', 'linux/arm64'],
    ['linux', 'arm', 'linux/arm/v7'],
    ['linux', 'ia32', 'linux/386'],
    ['linux', 'ppc64', 'linux/ppc64le'],
    ['linux', 's390x', 'linux/s390x'],
    ['linux', 'riscv64', 'linux/riscv64'],
    ['darwin', 'arm64', 'darwin/arm64'],
    ['win32', 'x64', 'windows/amd64'],
  ];
  for (const [os, arch, want] of table) it(`${os}/${arch} → ${want}`, () => assert.equal(formatPlatform(hostPlatform(os, arch)), want));

  it('defaults to this process', () => {
    assert.deepEqual(hostPlatform(), hostPlatform(process.platform, process.arch));
    if (process.platform === 'linux' && process.arch === 'x64') assert.deepEqual(hostPlatform(), { os: 'linux', architecture: 'amd64' });
  });
});

describe('platformMatcher', () => {
  // wanted → candidates with their rank (Infinity: must not match).
  const table: Array<[wanted: string, candidates: Array<[string, number]>]> = [
    ['linux/amd64', [['linux/amd64', 0], ['linux/x86_64', 0], ['linux/amd64/v1', 0], ['linux/386', Infinity], ['linux/amd64/v2', Infinity], ['linux/arm64', Infinity], ['windows/amd64', Infinity], ['darwin/amd64', Infinity]]],
    ['linux/amd64/v3', [['linux/amd64/v3', 0], ['linux/amd64/v2', 1], ['linux/amd64', 2], ['linux/amd64/v4', Infinity]]],
    ['linux/arm64', [['linux/arm64', 0], ['linux/arm64/v8', 0], ['linux/aarch64', 0], ['linux/arm/v7', Infinity], ['linux/arm', Infinity], ['linux/amd64', Infinity], ['linux/arm64/v9', Infinity]]],
    ['linux/arm64/v8', [['linux/arm64', 0]]],
    ['linux/arm/v7', [['linux/arm/v7', 0], ['linux/arm', 0], ['linux/armhf', 0], ['linux/arm/v6', 1], ['linux/armel', 1], ['linux/arm/v5', 2], ['linux/arm/v8', Infinity], ['linux/arm64', Infinity], ['windows/arm/v7', Infinity]]],
    ['linux/arm/v6', [['linux/arm/v6', 0], ['linux/arm/v5', 1], ['linux/arm/v7', Infinity]]],
    ['linux/arm/v8', [['linux/arm/v8', 0], ['linux/arm/v7', 1], ['linux/arm/v6', 2], ['linux/arm/v5', 3]]],
    ['linux/386', [['linux/386', 0], ['linux/i386', 0], ['linux/amd64', Infinity]]],
    ['linux/riscv64', [['linux/riscv64', 0], ['linux/riscv64/rva22', Infinity]]],
    ['darwin/arm64', [['darwin/arm64', 0], ['linux/arm64', Infinity]]],
  ];
  for (const [wanted, candidates] of table) {
    for (const [candidate, rank] of candidates) {
      it(`${wanted} ${rank === Infinity ? 'refuses' : `ranks ${rank} for`} ${candidate}`, () => {
        const m = platformMatcher(P(wanted));
        assert.equal(m.rank(P(candidate)), rank);
        assert.equal(m.match(P(candidate)), rank !== Infinity);
      });
    }
  }

  it('normalises the wanted platform too', () => {
    const m = platformMatcher({ os: 'Linux', architecture: 'armhf' });
    assert.equal(m.rank({ os: 'linux', architecture: 'arm', variant: 'v6' }), 1);
  });

  it('sorting by rank picks the best candidate of an index', () => {
    const candidates = ['linux/amd64', 'linux/arm/v5', 'linux/arm64', 'linux/arm/v6', 'linux/arm/v7', 'windows/arm/v7'].map(P);
    const m = platformMatcher(P('linux/arm/v7'));
    const ordered = candidates.filter((c) => m.match(c)).sort((a, b) => m.rank(a) - m.rank(b)).map(formatPlatform);
    assert.deepEqual(ordered, ['linux/arm/v7', 'linux/arm/v6', 'linux/arm/v5']);
  });
});
