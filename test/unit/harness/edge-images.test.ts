import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { sha256 } from '../../../src/oci/index.js';
import { edgeImages, encodeTar, type EdgeEntry } from '../../fixtures/edge-images.js';

function decompress(mediaType: string, data: Buffer): Buffer {
  if (mediaType.endsWith('gzip')) return gunzipSync(data);
  if (mediaType.endsWith('zstd')) return execFileSync('zstd', ['-d', '-q', '-c'], { input: data, maxBuffer: 64 << 20 });
  return data;
}

/** GNU tar's verbose listing, one line per entry. */
function gnuList(tar: Buffer): string[] {
  return execFileSync('tar', ['--full-time', '--numeric-owner', '-tvf', '-'], { input: tar, env: { ...process.env, TZ: 'UTC' } }).toString().trimEnd().split('\n');
}

test('edge images are deterministic, and every layer decompresses to its diffID and parses with GNU tar', async () => {
  const a = await edgeImages();
  const b = await edgeImages();
  assert.deepEqual(a.map((i) => i.image.digest), b.map((i) => i.image.digest));
  assert.equal(new Set(a.map((i) => i.name)).size, a.length, 'names are unique');
  for (const img of a) {
    assert.equal(img.image.layers.length, img.image.diffIds.length);
    for (const [i, layer] of img.image.layers.entries()) {
      const tar = decompress(layer.mediaType, layer.data);
      assert.equal(sha256(tar), img.image.diffIds[i], `${img.name} layer ${i}: diffID`);
      assert.ok(gnuList(tar).length > 0, `${img.name} layer ${i}: GNU tar lists it`);
    }
  }
  const media = new Set(a.flatMap((i) => i.image.layers.map((l) => l.mediaType)));
  for (const mt of ['application/vnd.oci.image.layer.v1.tar+gzip', 'application/vnd.oci.image.layer.v1.tar', 'application/vnd.oci.image.layer.v1.tar+zstd', 'application/vnd.docker.image.rootfs.diff.tar.gzip']) {
    assert.ok(media.has(mt), `some layer is ${mt}`);
  }
});

test('encodeTar: long names and link targets (PAX and GNU), devices, owners, PAX mtimes, as GNU tar reads them', () => {
  const long = `${'a'.repeat(60)}/${'b'.repeat(120)}/${'c'.repeat(150)}`;
  const target = `/${'t'.repeat(200)}`;
  const entries: EdgeEntry[] = [
    { path: long, content: 'x', uid: 1000, gid: 3000000, mode: 0o4755, mtime: '1700000000.25' },
    { path: 'link', type: 'symlink', linkname: target },
    { path: 'hard', type: 'hardlink', linkname: long },
    { path: 'null', type: 'char', devmajor: 1, devminor: 3, mode: 0o666 },
    { path: 'dir', type: 'dir', mode: 0o1777, mtime: 0 },
  ];
  for (const format of ['pax', 'gnu'] as const) {
    if (format === 'gnu') entries[0] = { ...entries[0]!, gid: 1000, mtime: 1700000000 }; // GNU records carry names only
    const lines = gnuList(encodeTar(entries, format));
    assert.equal(lines.length, 5, lines.join('\n'));
    assert.match(lines[0]!, new RegExp(`^-rwsr-xr-x 1000/${format === 'pax' ? 3000000 : 1000} +1 2023-11-14 22:13:20${format === 'pax' ? '\\.25' : ''} +${long}$`));
    assert.match(lines[1]!, new RegExp(`^lrwxrwxrwx 0/0 .* link -> ${target}$`));
    assert.match(lines[2]!, new RegExp(`^hrw-r--r-- 0/0 .* hard link to ${long}$`));
    assert.match(lines[3]!, /^crw-rw-rw- 0\/0 +1,3 .* null$/);
    assert.match(lines[4]!, /^drwxrwxrwt 0\/0 +0 1970-01-01 00:00:00 +dir\/$/);
  }
});
