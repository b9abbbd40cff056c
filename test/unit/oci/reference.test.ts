import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BerthError, type ErrorCode } from '../../../src/errors.js';
import { familiarName, familiarString, formatReference, parseReference, registryHost, repositoryName, type Reference } from '../../../src/oci/reference.js';

const HEX = 'a'.repeat(64);
const D = `sha256:${HEX}`;

/** input → the parsed reference, its canonical form and its familiar name. */
const valid: Array<[input: string, parsed: Reference, canonical: string, familiar: string]> = [
  ['busybox', { domain: 'docker.io', path: 'library/busybox' }, 'docker.io/library/busybox:latest', 'busybox'],
  ['busybox:1.36', { domain: 'docker.io', path: 'library/busybox', tag: '1.36' }, 'docker.io/library/busybox:1.36', 'busybox'],
  ['library/busybox', { domain: 'docker.io', path: 'library/busybox' }, 'docker.io/library/busybox:latest', 'busybox'],
  ['docker.io/busybox', { domain: 'docker.io', path: 'library/busybox' }, 'docker.io/library/busybox:latest', 'busybox'],
  ['docker.io/library/busybox:latest', { domain: 'docker.io', path: 'library/busybox', tag: 'latest' }, 'docker.io/library/busybox:latest', 'busybox'],
  ['index.docker.io/busybox', { domain: 'docker.io', path: 'library/busybox' }, 'docker.io/library/busybox:latest', 'busybox'],
  ['index.docker.io/team/app:v2', { domain: 'docker.io', path: 'team/app', tag: 'v2' }, 'docker.io/team/app:v2', 'team/app'],
  ['team/app', { domain: 'docker.io', path: 'team/app' }, 'docker.io/team/app:latest', 'team/app'],
  ['docker.io/library/a/b', { domain: 'docker.io', path: 'library/a/b' }, 'docker.io/library/a/b:latest', 'library/a/b'],
  ['localhost/x', { domain: 'localhost', path: 'x' }, 'localhost/x:latest', 'localhost/x'],
  ['localhost:5000/x', { domain: 'localhost:5000', path: 'x' }, 'localhost:5000/x:latest', 'localhost:5000/x'],
  ['localhost', { domain: 'docker.io', path: 'library/localhost' }, 'docker.io/library/localhost:latest', 'localhost'],
  ['localhost:5000', { domain: 'docker.io', path: 'library/localhost', tag: '5000' }, 'docker.io/library/localhost:5000', 'localhost'],
  ['127.0.0.1:5000/a/b:tag', { domain: '127.0.0.1:5000', path: 'a/b', tag: 'tag' }, '127.0.0.1:5000/a/b:tag', '127.0.0.1:5000/a/b'],
  ['[::1]:5000/x', { domain: '[::1]:5000', path: 'x' }, '[::1]:5000/x:latest', '[::1]:5000/x'],
  ['[2001:db8::1]/x:1', { domain: '[2001:db8::1]', path: 'x', tag: '1' }, '[2001:db8::1]/x:1', '[2001:db8::1]/x'],
  ['registry.example/a/b/c', { domain: 'registry.example', path: 'a/b/c' }, 'registry.example/a/b/c:latest', 'registry.example/a/b/c'],
  ['Registry.Example:443/team/web', { domain: 'Registry.Example:443', path: 'team/web' }, 'Registry.Example:443/team/web:latest', 'Registry.Example:443/team/web'],
  ['my-registry.example.com/x', { domain: 'my-registry.example.com', path: 'x' }, 'my-registry.example.com/x:latest', 'my-registry.example.com/x'],
  ['host/a/b/c', { domain: 'docker.io', path: 'host/a/b/c' }, 'docker.io/host/a/b/c:latest', 'host/a/b/c'],
  [`busybox@${D}`, { domain: 'docker.io', path: 'library/busybox', digest: D as Reference['digest'] }, `docker.io/library/busybox@${D}`, 'busybox'],
  [`busybox:1.36@${D}`, { domain: 'docker.io', path: 'library/busybox', tag: '1.36', digest: D as Reference['digest'] }, `docker.io/library/busybox:1.36@${D}`, 'busybox'],
  [`127.0.0.1:5000/a/b:tag@${D}`, { domain: '127.0.0.1:5000', path: 'a/b', tag: 'tag', digest: D as Reference['digest'] }, `127.0.0.1:5000/a/b:tag@${D}`, '127.0.0.1:5000/a/b'],
  [`x@sha512:${'b'.repeat(128)}`, { domain: 'docker.io', path: 'library/x', digest: `sha512:${'b'.repeat(128)}` as Reference['digest'] }, `docker.io/library/x@sha512:${'b'.repeat(128)}`, 'x'],
  ['team/a.b_c__d-e---f', { domain: 'docker.io', path: 'team/a.b_c__d-e---f' }, 'docker.io/team/a.b_c__d-e---f:latest', 'team/a.b_c__d-e---f'],
  // A "." in the first part makes it a registry host.
  ['a.b/c', { domain: 'a.b', path: 'c' }, 'a.b/c:latest', 'a.b/c'],
  ['busybox:Tag_1.0-rc.1', { domain: 'docker.io', path: 'library/busybox', tag: 'Tag_1.0-rc.1' }, 'docker.io/library/busybox:Tag_1.0-rc.1', 'busybox'],
  ['busybox:_x', { domain: 'docker.io', path: 'library/busybox', tag: '_x' }, 'docker.io/library/busybox:_x', 'busybox'],
  [`busybox:${'t'.repeat(128)}`, { domain: 'docker.io', path: 'library/busybox', tag: 't'.repeat(128) }, `docker.io/library/busybox:${'t'.repeat(128)}`, 'busybox'],
  // 255 characters exactly: "registry.example/" (17) + 238.
  [`registry.example/${'a'.repeat(238)}`, { domain: 'registry.example', path: 'a'.repeat(238) }, `registry.example/${'a'.repeat(238)}:latest`, `registry.example/${'a'.repeat(238)}`],
  ['0/1', { domain: 'docker.io', path: '0/1' }, 'docker.io/0/1:latest', '0/1'],
];

/** input → the error code, and a fragment the message must contain (what is wrong). */
const invalid: Array<[input: string, code: ErrorCode, fragment: string]> = [
  ['', 'INVALID_REFERENCE', 'empty'],
  ['Busybox', 'INVALID_REFERENCE', 'must be lowercase'],
  ['team/App:1', 'INVALID_REFERENCE', 'must be lowercase'],
  ['registry.example/Team/app', 'INVALID_REFERENCE', 'must be lowercase'],
  // Invalid in any case: the component is named, no lowercase spelling is offered.
  ['BAD REF', 'INVALID_REFERENCE', 'path component "BAD REF" of repository "library/BAD REF" is not valid'],
  ['Team/-App', 'INVALID_REFERENCE', 'path component "-App"'],
  ['busybox:', 'INVALID_REFERENCE', 'nothing follows ":"'],
  ['registry.example:5000/x:', 'INVALID_REFERENCE', 'nothing follows ":"'],
  ['busybox@', 'INVALID_REFERENCE', 'nothing follows "@"'],
  ['busybox@sha256:abc', 'INVALID_REFERENCE', 'not a valid digest'],
  [`busybox@sha256:${'A'.repeat(64)}`, 'INVALID_REFERENCE', 'not a valid digest'],
  ['busybox@sha256:../../etc/passwd', 'INVALID_REFERENCE', 'not a valid digest'],
  [`busybox@md5:${'a'.repeat(32)}`, 'INVALID_REFERENCE', 'unsupported algorithm'],
  [`busybox@${HEX}`, 'INVALID_REFERENCE', 'not a valid digest'],
  [`registry.example/${'a'.repeat(239)}`, 'INVALID_REFERENCE', 'the maximum is 255'],
  [`${'a'.repeat(250)}`, 'INVALID_REFERENCE', 'the maximum is 255'],
  ['a//b', 'INVALID_REFERENCE', 'empty path component'],
  ['registry.example//b', 'INVALID_REFERENCE', 'empty path component'],
  ['registry.example/', 'INVALID_REFERENCE', 'empty path component'],
  ['a/b/', 'INVALID_REFERENCE', 'empty path component'],
  ['/busybox', 'INVALID_REFERENCE', 'empty path component'],
  ['-busybox', 'INVALID_REFERENCE', 'path component "-busybox"'],
  ['_busybox', 'INVALID_REFERENCE', 'path component "_busybox"'],
  ['.busybox', 'INVALID_REFERENCE', 'path component ".busybox"'],
  ['busybox-', 'INVALID_REFERENCE', 'path component "busybox-"'],
  ['a___b', 'INVALID_REFERENCE', 'path component "a___b"'],
  ['a..b', 'INVALID_REFERENCE', 'path component "a..b"'],
  ['team/a b', 'INVALID_REFERENCE', 'path component "a b"'],
  [`busybox:${'t'.repeat(129)}`, 'INVALID_REFERENCE', 'tag is 129 characters long'],
  ['busybox:-x', 'INVALID_REFERENCE', 'tag "-x"'],
  ['busybox:.x', 'INVALID_REFERENCE', 'tag ".x"'],
  ['busybox:a+b', 'INVALID_REFERENCE', 'tag "a+b"'],
  ['-host.example/x', 'INVALID_REFERENCE', 'registry host "-host.example"'],
  ['host.example:port/x', 'INVALID_REFERENCE', 'registry host "host.example:port"'],
  ['[::1/x', 'INVALID_REFERENCE', 'registry host'],
  ['host..example/x', 'INVALID_REFERENCE', 'registry host "host..example"'],
  [HEX, 'INVALID_REFERENCE', 'image ID'],
  [':tag', 'INVALID_REFERENCE', 'repository name is empty'],
  [`@${D}`, 'INVALID_REFERENCE', 'repository name is empty'],
];

describe('parseReference', () => {
  it('has enough cases to mean something', () => assert.ok(valid.length + invalid.length >= 40));

  for (const [input, parsed, canonical, familiar] of valid) {
    it(`parses ${JSON.stringify(input.length > 60 ? `${input.slice(0, 57)}...` : input)}`, () => {
      const r = parseReference(input);
      assert.deepEqual(r, parsed);
      assert.equal(formatReference(r), canonical);
      assert.equal(familiarName(r), familiar);
      // Normalisation is idempotent, and the familiar name names the same repository.
      assert.equal(formatReference(parseReference(canonical)), canonical);
      assert.equal(repositoryName(parseReference(familiar)), repositoryName(r));
    });
  }

  for (const [input, code, fragment] of invalid) {
    it(`rejects ${JSON.stringify(input.length > 60 ? `${input.slice(0, 57)}...` : input)}`, () => {
      assert.throws(
        () => parseReference(input),
        (err: unknown) => {
          assert.ok(err instanceof BerthError, `expected BerthError, got ${String(err)}`);
          assert.equal(err.code, code);
          assert.ok(err.message.includes(JSON.stringify(input)), `message names the reference: ${err.message}`);
          assert.ok(err.message.includes(fragment), `message ${JSON.stringify(err.message)} should contain ${JSON.stringify(fragment)}`);
          assert.ok(err.hint && err.hint.length > 0, 'has a hint');
          return true;
        },
      );
    });
  }

  it('refuses URLs, keeping credentials out of the message', () => {
    for (const input of ['user:s3cret@registry.example/x', 'https://user:s3cret@registry.example/x:1', 's3cret@registry.example:5000/x', 'u:s3cret@[::1]:5000/x']) {
      assert.throws(() => parseReference(input), (err: unknown) => {
        assert.ok(err instanceof BerthError);
        assert.equal(err.code, 'INVALID_REFERENCE');
        assert.ok(err.message.includes('credentials'), err.message);
        assert.ok(!JSON.stringify(err.toJSON()).includes('s3cret'), err.message);
        assert.ok(err.message.includes(input.slice(input.indexOf('@') + 1)), err.message);
        return true;
      });
    }
    assert.throws(() => parseReference('https://registry.example/x'), (err: BerthError) => err.code === 'INVALID_REFERENCE' && err.message.includes('no URL scheme') && err.hint!.includes('"https://"'));
  });

  it('hints the lowercase spelling for an uppercase repository', () => {
    assert.throws(() => parseReference('Registry.Example/Team/App:Tag'), (err: BerthError) => err.hint?.includes('"Registry.Example/team/app:Tag"') === true);
    assert.throws(() => parseReference('Busybox'), (err: BerthError) => err.hint?.includes('"busybox"') === true);
  });
});

describe('formatReference', () => {
  const base = { domain: 'registry.example:5000', path: 'a/b' };
  const table: Array<[Reference, string]> = [
    [base, 'registry.example:5000/a/b:latest'],
    [{ ...base, tag: 'v1' }, 'registry.example:5000/a/b:v1'],
    [{ ...base, digest: D as Reference['digest'] }, `registry.example:5000/a/b@${D}`],
    [{ ...base, tag: 'v1', digest: D as Reference['digest'] }, `registry.example:5000/a/b:v1@${D}`],
  ];
  for (const [r, s] of table) it(`formats ${s}`, () => assert.equal(formatReference(r), s));
});

describe('familiarString', () => {
  it('keeps tag and digest as given and adds no :latest', () => {
    assert.equal(familiarString(parseReference('docker.io/library/busybox')), 'busybox');
    assert.equal(familiarString(parseReference('busybox:1.36')), 'busybox:1.36');
    assert.equal(familiarString(parseReference(`127.0.0.1:5000/a:t@${D}`)), `127.0.0.1:5000/a:t@${D}`);
  });
});

describe('registryHost', () => {
  const table: Array<[string, string]> = [
    ['docker.io', 'registry-1.docker.io'],
    ['127.0.0.1:5000', '127.0.0.1:5000'],
    ['registry.example', 'registry.example'],
    ['[::1]:5000', '[::1]:5000'],
  ];
  for (const [domain, host] of table) it(`${domain} → ${host}`, () => assert.equal(registryHost(domain), host));
});
