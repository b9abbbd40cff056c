import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BerthError, type ErrorCode } from '../../../src/errors.js';
import { detectManifestType, parseImageConfig, parseIndex, parseManifest } from '../../../src/oci/descriptor.js';
import { MediaType } from '../../../src/oci/mediatype.js';

const A = `sha256:${'a'.repeat(64)}`;
const B = `sha256:${'b'.repeat(64)}`;
const C = `sha256:${'c'.repeat(64)}`;
const bytes = (v: unknown): Uint8Array => new TextEncoder().encode(typeof v === 'string' ? v : JSON.stringify(v));

function expectError(fn: () => unknown, code: ErrorCode, ...fragments: string[]): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof BerthError, `expected BerthError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    for (const f of fragments) assert.ok(err.message.includes(f), `${JSON.stringify(err.message)} should contain ${JSON.stringify(f)}`);
    return true;
  });
}

const manifest = {
  schemaVersion: 2,
  mediaType: MediaType.ociManifest,
  config: { mediaType: MediaType.ociConfig, digest: A, size: 123 },
  layers: [
    { mediaType: MediaType.ociLayerGzip, digest: B, size: 456, annotations: { 'org.opencontainers.image.title': 'rootfs' } },
    { mediaType: MediaType.ociLayer, digest: C, size: 0, urls: ['https://example/blob', 7] },
  ],
  annotations: { created: 'today' },
};

const index = {
  schemaVersion: 2,
  mediaType: MediaType.ociIndex,
  manifests: [
    { mediaType: MediaType.ociManifest, digest: A, size: 10, platform: { os: 'linux', architecture: 'amd64' } },
    { mediaType: MediaType.ociManifest, digest: B, size: 11, platform: { os: 'linux', architecture: 'arm', variant: 'v7' } },
    { mediaType: MediaType.ociManifest, digest: C, size: 12, platform: { os: 'linux' } },
  ],
};

const config = {
  architecture: 'amd64',
  os: 'linux',
  config: { Env: ['PATH=/bin'], Cmd: ['sh'] },
  rootfs: { type: 'layers', diff_ids: [B, C] },
};

describe('parseManifest', () => {
  it('parses a good OCI manifest', () => {
    const m = parseManifest(bytes(manifest), MediaType.ociManifest, 'manifest x');
    assert.deepEqual(m, {
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      config: { mediaType: MediaType.ociConfig, digest: A, size: 123 },
      layers: [
        { mediaType: MediaType.ociLayerGzip, digest: B, size: 456, annotations: { 'org.opencontainers.image.title': 'rootfs' } },
        { mediaType: MediaType.ociLayer, digest: C, size: 0, urls: ['https://example/blob'] },
      ],
      annotations: { created: 'today' },
    });
  });

  it('parses a Docker schema2 manifest', () => {
    const doc = { ...manifest, mediaType: MediaType.dockerManifest, config: { ...manifest.config, mediaType: MediaType.dockerConfig } };
    assert.equal(parseManifest(bytes(doc), MediaType.dockerManifest, 'm').config.mediaType, MediaType.dockerConfig);
  });

  const bad: Array<[string, unknown, string[]]> = [
    ['non-JSON', '{"schemaVersion": 2,', ['not valid JSON']],
    ['a JSON array', '[]', ['not a JSON object']],
    ['JSON null', 'null', ['not a JSON object']],
    ['schemaVersion 1', { ...manifest, schemaVersion: 1 }, ['schemaVersion is 1']],
    ['no layers', { ...manifest, layers: undefined }, ['no layers array']],
    ['no config', { ...manifest, config: undefined }, ['config', 'not an object']],
    ['a path-traversal layer digest', { ...manifest, layers: [{ ...manifest.layers[0], digest: 'sha256:../../etc/passwd' }] }, ['layers[0]', 'sha256:../../etc/passwd', 'not a valid digest']],
    ['an uppercase config digest', { ...manifest, config: { ...manifest.config, digest: A.toUpperCase() } }, ['config', 'not a valid digest']],
    ['a missing digest', { ...manifest, layers: [manifest.layers[0], { mediaType: MediaType.ociLayer, size: 1 }] }, ['layers[1]', 'not a valid digest']],
    ['a negative size', { ...manifest, layers: [{ ...manifest.layers[0], size: -1 }] }, ['layers[0]', 'invalid size -1']],
    ['a fractional size', { ...manifest, layers: [{ ...manifest.layers[0], size: 1.5 }] }, ['invalid size 1.5']],
    ['a string size', { ...manifest, layers: [{ ...manifest.layers[0], size: '10' }] }, ['invalid size "10"']],
    ['no mediaType in a descriptor', { ...manifest, layers: [{ digest: B, size: 1 }] }, ['layers[0]', 'no mediaType']],
  ];
  for (const [name, doc, fragments] of bad) {
    it(`rejects ${name} with INVALID_MANIFEST`, () => expectError(() => parseManifest(bytes(doc), MediaType.ociManifest, 'manifest of x'), 'INVALID_MANIFEST', 'manifest of x', ...fragments));
  }
});

describe('parseIndex', () => {
  it('parses a good index, keeping complete platforms only', () => {
    const ix = parseIndex(bytes(index), MediaType.ociIndex, 'index');
    assert.equal(ix.manifests.length, 3);
    assert.deepEqual(ix.manifests[0]?.platform, { os: 'linux', architecture: 'amd64' });
    assert.deepEqual(ix.manifests[1]?.platform, { os: 'linux', architecture: 'arm', variant: 'v7' });
    assert.equal(ix.manifests[2]?.platform, undefined);
    assert.deepEqual(ix.manifests.map((m) => m.digest), [A, B, C]);
  });

  const bad: Array<[string, unknown, string[]]> = [
    ['non-JSON', 'not json', ['not valid JSON']],
    ['no manifests', { schemaVersion: 2 }, ['no manifests array']],
    ['schemaVersion "2"', { ...index, schemaVersion: '2' }, ['schemaVersion is "2"']],
    ['an invalid manifest digest', { ...index, manifests: [index.manifests[0], { ...index.manifests[1], digest: 'sha256:1234' }] }, ['manifests[1]', 'sha256:1234']],
    ['a descriptor that is not an object', { ...index, manifests: ['sha256:x'] }, ['manifests[0]', 'not an object']],
  ];
  for (const [name, doc, fragments] of bad) {
    it(`rejects ${name} with INVALID_MANIFEST`, () => expectError(() => parseIndex(bytes(doc), MediaType.ociIndex, 'index of x'), 'INVALID_MANIFEST', 'index of x', ...fragments));
  }
});

describe('parseImageConfig', () => {
  it('parses a good config', () => {
    const c = parseImageConfig(bytes(config), 'config');
    assert.equal(c.os, 'linux');
    assert.equal(c.architecture, 'amd64');
    assert.deepEqual(c.rootfs.diff_ids, [B, C]);
    assert.deepEqual(c.config?.Cmd, ['sh']);
  });

  const bad: Array<[string, unknown, string[]]> = [
    ['non-JSON', '{', ['not valid JSON']],
    ['no os', { ...config, os: undefined }, ['os or architecture']],
    ['no architecture', { ...config, architecture: 7 }, ['os or architecture']],
    ['no rootfs', { ...config, rootfs: undefined }, ['rootfs.diff_ids']],
    ['an invalid diff_id', { ...config, rootfs: { type: 'layers', diff_ids: [B, 'sha256:../x'] } }, ['rootfs.diff_ids[1]', 'sha256:../x']],
  ];
  for (const [name, doc, fragments] of bad) {
    it(`rejects ${name} with INVALID_MANIFEST`, () => expectError(() => parseImageConfig(bytes(doc), 'config of x'), 'INVALID_MANIFEST', 'config of x', ...fragments));
  }
});

describe('detectManifestType', () => {
  const { mediaType: _m, ...bareManifest } = manifest;
  const { mediaType: _i, ...bareIndex } = index;
  const table: Array<[string, unknown, string | undefined, string]> = [
    ['the document mediaType (manifest)', manifest, undefined, MediaType.ociManifest],
    ['the document mediaType (index)', index, undefined, MediaType.ociIndex],
    ['the document mediaType over Content-Type', { ...manifest, mediaType: MediaType.dockerManifest }, MediaType.ociManifest, MediaType.dockerManifest],
    ['the Content-Type when the document has none', bareIndex, MediaType.dockerManifestList, MediaType.dockerManifestList],
    ['the Content-Type with parameters', bareManifest, `${MediaType.dockerManifest}; charset=utf-8`, MediaType.dockerManifest],
    ['the shape: manifests[] is an index', bareIndex, undefined, MediaType.ociIndex],
    ['the shape: layers[] is a manifest', bareManifest, undefined, MediaType.ociManifest],
    ['the shape when Content-Type is generic', bareManifest, 'application/json', MediaType.ociManifest],
  ];
  for (const [name, doc, ct, want] of table) it(`uses ${name}`, () => assert.equal(detectManifestType(bytes(doc), ct, 'm'), want));

  it('refuses a schema1 document, mentioning schema1', () => {
    const schema1 = { schemaVersion: 1, name: 'library/busybox', tag: 'latest', fsLayers: [{ blobSum: A }] };
    expectError(() => detectManifestType(bytes(schema1), undefined, 'manifest of busybox'), 'UNSUPPORTED', 'schema1', 'manifest of busybox');
    assert.throws(() => detectManifestType(bytes(schema1), undefined, 'm'), (err: BerthError) => Boolean(err.hint));
  });

  it('refuses a schema1 Content-Type, mentioning schema1', () => {
    expectError(() => detectManifestType(bytes(bareManifest), MediaType.dockerSchema1Signed, 'm'), 'UNSUPPORTED', 'schema1');
  });

  it('refuses a document of unknown shape', () => {
    expectError(() => detectManifestType(bytes({ schemaVersion: 2, mediaType: 'application/x-thing' }), undefined, 'm'), 'UNSUPPORTED', 'application/x-thing');
  });

  it('refuses non-JSON with INVALID_MANIFEST', () => {
    expectError(() => detectManifestType(bytes('<html>'), 'text/html', 'm'), 'INVALID_MANIFEST', 'not valid JSON');
  });
});
