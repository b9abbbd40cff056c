import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { gunzipSync } from 'node:zlib';
import { extract } from 'tar-stream';
import {
  busyboxImage,
  makeImage,
  makeIndex,
  makeLayer,
  multiPlatformIndex,
  FIXTURE_MTIME,
  DOCKER_LAYER_TAR,
} from '../../fixtures/images.js';
import { MediaType, parseImageConfig, parseIndex, parseManifest, sha256 } from '../../../src/oci/index.js';

interface TarEntry {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: Date;
  linkname: string | null;
  data: Buffer;
}

async function readTar(tar: Buffer): Promise<TarEntry[]> {
  const ex = extract();
  const out: TarEntry[] = [];
  const done = (async () => {
    for await (const entry of ex) {
      const chunks: Buffer[] = [];
      for await (const c of entry) chunks.push(c as Buffer);
      const h = entry.header;
      out.push({ name: h.name, type: h.type, mode: h.mode, uid: h.uid, gid: h.gid, mtime: h.mtime, linkname: h.linkname, data: Buffer.concat(chunks) });
    }
  })();
  ex.end(tar);
  await done;
  return out;
}

test('fixtures are deterministic: building twice gives the same digests', async () => {
  for (const format of ['oci', 'docker'] as const) {
    for (const compression of ['gzip', 'none'] as const) {
      const a = await busyboxImage({ format, compression, extraLayers: 2 });
      const b = await busyboxImage({ format, compression, extraLayers: 2 });
      assert.equal(a.digest, b.digest);
      assert.equal(a.config.digest, b.config.digest);
      assert.deepEqual(a.layers.map((l) => l.digest), b.layers.map((l) => l.digest));
      assert.deepEqual(a.diffIds, b.diffIds);
    }
  }
  const i1 = await multiPlatformIndex();
  const i2 = await multiPlatformIndex();
  assert.equal(i1.digest, i2.digest);
});

test('busybox image: manifest, config and layers are consistent and parse with src/oci', async () => {
  const img = await busyboxImage({ extraLayers: 2 });
  assert.equal(img.mediaType, MediaType.ociManifest);
  assert.equal(img.digest, sha256(img.manifest));
  assert.equal(img.size, img.manifest.length);
  const m = parseManifest(img.manifest, img.mediaType, 'fixture');
  assert.equal(m.config.digest, img.config.digest);
  assert.equal(m.config.mediaType, MediaType.ociConfig);
  assert.equal(m.layers.length, 3);
  for (const [i, l] of img.layers.entries()) {
    assert.equal(l.mediaType, MediaType.ociLayerGzip);
    assert.equal(l.digest, sha256(l.data));
    assert.equal(l.size, l.data.length);
    assert.deepEqual(m.layers[i], { mediaType: l.mediaType, digest: l.digest, size: l.size });
    assert.equal(sha256(gunzipSync(l.data)), img.diffIds[i]);
  }
  const cfg = parseImageConfig(img.config.data, 'config');
  assert.deepEqual(cfg.rootfs.diff_ids, img.diffIds);
  assert.equal(cfg.created, '2024-01-01T00:00:00Z');
  assert.equal(cfg.os, img.platform.os);
  assert.equal(cfg.architecture, img.platform.architecture);
  assert.deepEqual(cfg.config?.Cmd, ['/bin/sh']);
  // gzip header: no file name flag, mtime 0
  const gz = img.layers[0]!.data;
  assert.equal(gz[3]! & 0x08, 0);
  assert.equal(gz.readUInt32LE(4), 0);

  const entries = await readTar(gunzipSync(gz));
  const byName = new Map(entries.map((e) => [e.name, e]));
  const bb = byName.get('bin/busybox');
  assert.ok(bb);
  assert.ok(bb.data.equals(await readFile('/bin/busybox')));
  assert.equal(bb.mode, 0o755);
  assert.equal(byName.get('bin/sh')?.type, 'symlink');
  assert.equal(byName.get('bin/sh')?.linkname, 'busybox');
  assert.match(byName.get('etc/passwd')?.data.toString() ?? '', /^root:x:0:0:/);
  assert.match(byName.get('etc/group')?.data.toString() ?? '', /^root:x:0:/);
  for (const e of entries) {
    assert.equal(e.mtime.getTime(), FIXTURE_MTIME.getTime(), e.name);
    assert.equal(e.uid, 0);
    assert.equal(e.gid, 0);
  }
  const extra = await readTar(gunzipSync(img.layers[2]!.data));
  assert.deepEqual(extra.map((e) => e.name), ['etc/', 'etc/layer-2']);
});

test('docker format and uncompressed layers use the matching media types', async () => {
  const d = await busyboxImage({ format: 'docker' });
  assert.equal(d.mediaType, MediaType.dockerManifest);
  assert.equal(d.config.mediaType, MediaType.dockerConfig);
  assert.equal(d.layers[0]!.mediaType, MediaType.dockerLayerGzip);
  const u = await busyboxImage({ compression: 'none' });
  assert.equal(u.layers[0]!.mediaType, MediaType.ociLayer);
  assert.equal(u.layers[0]!.digest, u.diffIds[0]);
  const du = await makeLayer([{ path: 'a', content: 'x' }], 'none', 'docker');
  assert.equal(du.blob.mediaType, DOCKER_LAYER_TAR);
});

test('makeLayer honours entry types, modes, owners and link names', async () => {
  const { blob, diffId } = await makeLayer(
    [
      { path: '/d', type: 'dir', mode: 0o750, uid: 1000, gid: 1000 },
      { path: '/d/f', content: 'hello', mode: 0o600 },
      { path: '/d/s', type: 'symlink', linkname: '../etc/x' },
      { path: '/d/h', type: 'hardlink', linkname: '/d/f' },
      { path: '/d/.wh.gone', content: '' },
    ],
    'none',
    'oci',
  );
  assert.equal(diffId, blob.digest);
  const e = await readTar(blob.data);
  assert.deepEqual(
    e.map((x) => [x.name, x.type, x.mode, x.uid, x.linkname ?? null]),
    [
      ['d/', 'directory', 0o750, 1000, null],
      ['d/f', 'file', 0o600, 0, null],
      ['d/s', 'symlink', 0o777, 0, '../etc/x'],
      ['d/h', 'link', 0o644, 0, 'd/f'],
      ['d/.wh.gone', 'file', 0o644, 0, null],
    ],
  );
  assert.equal(e[1]!.data.toString(), 'hello');
});

test('makeImage applies config overrides and platform', async () => {
  const img = await makeImage({
    layers: [[{ path: 'x', content: '1' }]],
    platform: { os: 'linux', architecture: 'arm', variant: 'v7' },
    config: { Entrypoint: ['/bin/x'], Env: ['A=1'] },
  });
  const cfg = parseImageConfig(img.config.data, 'config');
  assert.equal(cfg.variant, 'v7');
  assert.deepEqual(cfg.config?.Entrypoint, ['/bin/x']);
  assert.deepEqual(cfg.config?.Env, ['A=1']);
  assert.deepEqual(cfg.config?.Cmd, ['/bin/sh']);
});

test('indexes: descriptors carry each platform; multi-platform entries differ', async () => {
  const idx = await multiPlatformIndex();
  assert.equal(idx.mediaType, MediaType.ociIndex);
  assert.equal(idx.digest, sha256(idx.index));
  const parsed = parseIndex(idx.index, idx.mediaType, 'index');
  assert.deepEqual(parsed.manifests.map((m) => m.platform), [
    { os: 'linux', architecture: 'amd64' },
    { os: 'linux', architecture: 'arm64', variant: 'v8' },
  ]);
  assert.deepEqual(parsed.manifests.map((m) => m.digest), idx.images.map((i) => i.digest));
  assert.notEqual(idx.images[0]!.digest, idx.images[1]!.digest);
  assert.equal(idx.images[0]!.layers[0]!.digest, idx.images[1]!.layers[0]!.digest, 'busybox layer is shared');
  assert.notEqual(idx.images[0]!.layers[1]!.digest, idx.images[1]!.layers[1]!.digest);
  const platformFile = (await readTar(gunzipSync(idx.images[1]!.layers[1]!.data))).find((e) => e.name === 'etc/platform');
  assert.equal(platformFile?.data.toString(), 'linux/arm64/v8\n');

  const docker = await multiPlatformIndex({ format: 'docker' });
  assert.equal(docker.mediaType, MediaType.dockerManifestList);
  assert.ok(docker.images.every((i) => i.mediaType === MediaType.dockerManifest));
  const one = makeIndex([idx.images[0]!]);
  assert.equal(parseIndex(one.index, one.mediaType, 'x').manifests.length, 1);
});
