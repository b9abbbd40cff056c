/**
 * ImageImporter in-process: OCI layout directories, OCI archives (plain and
 * gzip'd, documents before or after the blobs), docker save archives (classic
 * and Docker 25 paths, shared layers as symlinks), names and platforms, and
 * every bad input the issue lists — each failing with its code, naming the
 * file and the problem, recording no name and leaving no partial blob.
 */
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { isBerthError, type ErrorCode } from '../../../src/errors.js';
import { ImageImporter, type ImportOptions } from '../../../src/images/index.js';
import { MediaType, sha256, type Digest } from '../../../src/oci/index.js';
import type { System } from '../../../src/system.js';
import {
  busyboxImage,
  fixtureHostPlatform,
  makeImage,
  makeLayer,
  multiPlatformIndex,
  type FixtureImage,
  type FixtureIndex,
} from '../../fixtures/images.js';
import { openTestSystem } from '../../helpers/berth.js';
import { tempDir } from '../../helpers/tmp.js';
import { blobName, dockerSaveFiles, fixtureBlobs, handmadeImage, layoutFiles, tarOf, writeDir, type ArchiveFile } from './archives.js';

interface Env {
  sys: System;
  dir: string;
  importer: ImageImporter;
  run(path: string, opts?: ImportOptions): ReturnType<ImageImporter['import']>;
}

async function withEnv(fn: (env: Env) => Promise<void>): Promise<void> {
  const tmp = await tempDir('berth-import-');
  const { sys } = await openTestSystem(join(tmp.path, 'root'));
  const importer = new ImageImporter({ content: sys.content, metadata: sys.metadata, events: sys.events, logger: sys.logger, hostPlatform: fixtureHostPlatform() });
  try {
    await fn({ sys, dir: tmp.path, importer, run: (p, o) => importer.import(p, o) });
  } finally {
    await sys.close();
    await tmp.cleanup();
  }
}

async function stored(sys: System): Promise<Digest[]> {
  const out: Digest[] = [];
  for await (const b of sys.content.list()) out.push(b.digest);
  return out.sort();
}

async function file(dir: string, name: string, data: Buffer): Promise<string> {
  const p = join(dir, name);
  await writeFile(p, data);
  return p;
}

/** The import fails with `code`, a message naming the input and matching `problem`, and leaves nothing named and no partial blob. */
async function rejects(env: Env, path: string, code: ErrorCode, problem: RegExp, opts: ImportOptions = {}): Promise<void> {
  await assert.rejects(env.run(path, opts), (err: unknown) => {
    assert.ok(isBerthError(err), `not a BerthError: ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.ok(err.message.includes(path), `message names the input: ${err.message}`);
    assert.match(err.message, problem);
    return true;
  });
  assert.deepEqual(await env.sys.metadata.images.list(), [], 'no name recorded');
  assert.deepEqual(await env.sys.content.ingests(), [], 'no ingest left behind');
  for (const d of await stored(env.sys)) assert.ok(await env.sys.content.verify(d), `stored blob ${d} is whole`);
}

function allDigests(img: FixtureImage): Digest[] {
  return [img.digest, img.config.digest, ...img.layers.map((l) => l.digest)];
}

describe('image import', () => {
  let image: FixtureImage;
  let plain: FixtureImage;
  let plain2: FixtureImage;
  let index: FixtureIndex;
  const host = fixtureHostPlatform();

  before(async () => {
    image = await busyboxImage({ extraLayers: 2 });
    plain = await busyboxImage({ format: 'docker', compression: 'none', extraLayers: 1 });
    // Shares its first layer (busybox) with `plain`.
    plain2 = await busyboxImage({ format: 'docker', compression: 'none', extraLayers: 2 });
    index = await multiPlatformIndex();
  });

  describe('OCI layouts', () => {
    test('a layout directory: the image is stored, labelled and named after io.containerd.image.name', () =>
      withEnv(async (env) => {
        const dir = join(env.dir, 'layout');
        await writeDir(dir, layoutFiles(image, { imageName: 'registry.example:5000/team/app:1.4', refName: '1.4' }));
        const res = await env.run(dir);
        assert.equal(res.format, 'oci-layout');
        assert.deepEqual(res.images.map((i) => i.record.name), ['registry.example:5000/team/app:1.4']);
        assert.equal(res.images[0]!.record.target.digest, image.digest);
        assert.equal(res.images[0]!.record.labels['berth.io/platform'], `${host.os}/${host.architecture}`);
        assert.deepEqual(await stored(env.sys), allDigests(image).sort());
        assert.equal(res.storedBytes, allDigests(image).reduce((n, d) => n + fixtureBlobs(image).get(d)!.length, 0));
        assert.deepEqual(await env.sys.metadata.content.references(image.digest), [image.config.digest, ...image.layers.map((l) => l.digest)]);
        assert.deepEqual(await env.sys.metadata.leases.list(), [], 'the lease is gone once the name protects the content');
        const again = await env.run(dir);
        assert.equal(again.storedBytes, 0, 'a second import writes nothing');
      }));

    test('a ref.name that is a whole reference names the image; a bare tag needs --name', () =>
      withEnv(async (env) => {
        const full = join(env.dir, 'full');
        await writeDir(full, layoutFiles(image, { refName: 'busybox:1.36' }));
        assert.equal((await env.run(full)).images[0]!.record.name, 'docker.io/library/busybox:1.36');

        const bare = join(env.dir, 'bare');
        await writeDir(bare, layoutFiles(image, { refName: '1.36' }));
        await assert.rejects(env.run(bare), (err: unknown) => isBerthError(err, 'INVALID_ARGUMENT') && /only by tag \(1\.36\)/.test(err.message) && /--name/.test(err.hint ?? ''));
        assert.equal((await env.run(bare, { name: 'team/app:2' })).images[0]!.record.name, 'docker.io/team/app:2');
      }));

    test('a name that pins another digest is refused; one that pins the image\'s own is recorded', () =>
      withEnv(async (env) => {
        const dir = join(env.dir, 'layout');
        await writeDir(dir, layoutFiles(image, { imageName: `example.com/pinned@${image.config.digest}` }));
        await rejects(env, dir, 'INVALID_ARGUMENT', new RegExp(`pins digest ${image.config.digest}, but the image is ${image.digest}`));
        const res = await env.run(dir, { name: `example.com/pinned@${image.digest}` });
        assert.deepEqual(res.images.map((i) => i.record.name), [`example.com/pinned@${image.digest}`]);
      }));

    test('--name overrides the names in the layout', () =>
      withEnv(async (env) => {
        const dir = join(env.dir, 'layout');
        await writeDir(dir, layoutFiles(image, { imageName: 'docker.io/library/busybox:latest' }));
        const res = await env.run(dir, { name: 'localhost:5000/mine' });
        assert.deepEqual(res.images.map((i) => i.record.name), ['localhost:5000/mine:latest']);
        assert.equal(await env.sys.metadata.images.get('docker.io/library/busybox:latest'), undefined);
      }));

    for (const [label, gzip, documentsLast] of [
      ['an OCI archive', false, false],
      ['a gzip-compressed OCI archive', true, false],
      ['an OCI archive with index.json after the blobs', false, true],
    ] as const) {
      test(`${label} holding an index: the host's platform is selected and the index labelled with it`, () =>
        withEnv(async (env) => {
          const path = await file(env.dir, 'image.tar', await tarOf(layoutFiles(index, { imageName: 'example.com/multi:1', documentsLast }), { gzip }));
          const res = await env.run(path);
          assert.equal(res.format, 'oci-archive');
          const want = index.images.find((i) => i.platform.architecture === host.architecture);
          if (!want) return; // the host is neither amd64 nor arm64: covered by the --platform test
          assert.equal(res.images[0]!.record.target.digest, index.digest);
          assert.equal(res.images[0]!.manifest.digest, want.digest);
          assert.deepEqual(await env.sys.metadata.content.references(index.digest), [want.digest]);
          for (const d of [index.digest, ...allDigests(want)]) assert.ok(await env.sys.content.info(d), `${d} stored`);
        }));
    }

    test('--platform picks another platform of an index; a directory stores only that platform\'s blobs', () =>
      withEnv(async (env) => {
        const dir = join(env.dir, 'layout');
        await writeDir(dir, layoutFiles(index, { imageName: 'example.com/multi:1' }));
        const arm = index.images.find((i) => i.platform.architecture === 'arm64')!;
        const amd = index.images.find((i) => i.platform.architecture === 'amd64')!;
        const res = await env.run(dir, { platform: { os: 'linux', architecture: 'arm64' } });
        assert.equal(res.images[0]!.manifest.digest, arm.digest);
        assert.equal(res.images[0]!.record.labels['berth.io/platform'], 'linux/arm64');
        const blobs = await stored(env.sys);
        assert.deepEqual(blobs, [index.digest, ...allDigests(arm)].sort());
        assert.ok(!blobs.includes(amd.digest));
        await assert.rejects(env.run(dir, { platform: { os: 'linux', architecture: 's390x' } }), (err: unknown) => isBerthError(err, 'NO_MATCHING_PLATFORM') && /linux\/amd64/.test(err.message));
      }));

    test('a single-platform image for another platform: NO_MATCHING_PLATFORM only when --platform asks', () =>
      withEnv(async (env) => {
        const arm = await busyboxImage({ platform: { os: 'linux', architecture: 'riscv64' } });
        const dir = join(env.dir, 'layout');
        await writeDir(dir, layoutFiles(arm, { imageName: 'example.com/rv:1' }));
        await rejects(env, dir, 'NO_MATCHING_PLATFORM', /linux\/riscv64, not linux\/amd64/, { platform: { os: 'linux', architecture: 'amd64' } });
        const res = await env.run(dir);
        assert.equal(res.images[0]!.record.labels['berth.io/platform'], 'linux/riscv64');
      }));

    test('several names in index.json: each recorded; entries without a name are skipped', () =>
      withEnv(async (env) => {
        const other = await busyboxImage({ extraLayers: 1 });
        const dir = join(env.dir, 'layout');
        const files = layoutFiles(image, {
          imageName: 'example.com/a:1',
          extraEntries: [
            { mediaType: other.mediaType, digest: other.digest, size: other.size, annotations: { 'org.opencontainers.image.ref.name': 'example.com/b:2' } },
            { mediaType: image.mediaType, digest: image.digest, size: image.size, annotations: { 'io.containerd.image.name': 'example.com/a:latest' } },
            { mediaType: other.mediaType, digest: other.digest, size: other.size },
          ],
          extraBlobs: [...fixtureBlobs(other)].map(([digest, data]) => ({ digest, data })),
        });
        await writeDir(dir, files);
        const res = await env.run(dir);
        assert.deepEqual(res.images.map((i) => [i.record.name, i.record.target.digest]).sort(), [
          ['example.com/a:1', image.digest],
          ['example.com/a:latest', image.digest],
          ['example.com/b:2', other.digest],
        ]);
      }));
  });

  describe('docker save archives', () => {
    test('a classic docker save: a Docker schema2 manifest is synthesised and stored, named after RepoTags', () =>
      withEnv(async (env) => {
        const path = await file(env.dir, 'save.tar', await tarOf(dockerSaveFiles([{ image: plain, repoTags: ['busybox:latest', 'example.com/bb:1'] }])));
        const res = await env.run(path);
        assert.equal(res.format, 'docker-archive');
        assert.deepEqual(res.images.map((i) => i.record.name), ['docker.io/library/busybox:latest', 'example.com/bb:1']);
        const target = res.images[0]!.record.target;
        assert.equal(target.mediaType, MediaType.dockerManifest);
        const manifest = JSON.parse((await env.sys.content.readBytes(target.digest, 1 << 20)).toString()) as Record<string, unknown>;
        assert.deepEqual(manifest, {
          schemaVersion: 2,
          mediaType: MediaType.dockerManifest,
          config: { mediaType: MediaType.dockerConfig, digest: plain.config.digest, size: plain.config.size },
          layers: plain.layers.map((l) => ({ mediaType: MediaType.dockerLayer, digest: l.digest, size: l.size })),
        });
        assert.equal(target.digest, sha256(await env.sys.content.readBytes(target.digest, 1 << 20)));
        assert.deepEqual(await stored(env.sys), [target.digest, plain.config.digest, ...plain.layers.map((l) => l.digest)].sort());
        assert.deepEqual(await env.sys.metadata.content.references(target.digest), [plain.config.digest, ...plain.layers.map((l) => l.digest)]);
      }));

    test('two images sharing a layer written as a symlink, gzip-compressed: both imported', () =>
      withEnv(async (env) => {
        const files = dockerSaveFiles([{ image: plain, repoTags: ['one:1'] }, { image: plain2, repoTags: ['two:2'] }], { linkSharedLayers: true });
        assert.ok(files.some((f) => f.linkname), 'fixture: a layer is a symlink');
        const path = await file(env.dir, 'save.tar.gz', await tarOf(files, { gzip: true }));
        const res = await env.run(path);
        assert.deepEqual(res.images.map((i) => i.record.name), ['docker.io/library/one:1', 'docker.io/library/two:2']);
        for (const d of [...plain.layers, ...plain2.layers].map((l) => l.digest)) assert.ok(await env.sys.content.verify(d));
      }));

    test('Docker 25 paths (blobs/sha256) without an OCI index, and a docker save tree in a directory', () =>
      withEnv(async (env) => {
        const path = await file(env.dir, 'modern.tar', await tarOf(dockerSaveFiles([{ image: plain, repoTags: ['modern:1'] }], { modern: true })));
        const res = await env.run(path);
        assert.equal(res.images[0]!.config.digest, plain.config.digest);
        const dir = join(env.dir, 'tree');
        await writeDir(dir, dockerSaveFiles([{ image: plain2, repoTags: ['tree:1'] }], { linkSharedLayers: true }));
        const tree = await env.run(dir);
        assert.equal(tree.format, 'docker-archive');
        assert.deepEqual(await env.sys.metadata.content.references(tree.images[0]!.manifest.digest), [plain2.config.digest, ...plain2.layers.map((l) => l.digest)]);
      }));

    test('no RepoTags: --name is required, and then names it', () =>
      withEnv(async (env) => {
        const path = await file(env.dir, 'save.tar', await tarOf(dockerSaveFiles([{ image: plain, repoTags: null }])));
        await rejects(env, path, 'INVALID_ARGUMENT', /carries no image name: manifest.json has no RepoTags/);
        const res = await env.run(path, { name: 'example.com/named' });
        assert.deepEqual(res.images.map((i) => i.record.name), ['example.com/named:latest']);
      }));

    test('--name with an archive of two images is refused', () =>
      withEnv(async (env) => {
        const path = await file(env.dir, 'save.tar', await tarOf(dockerSaveFiles([{ image: plain, repoTags: ['a:1'] }, { image: plain2, repoTags: ['b:1'] }])));
        await rejects(env, path, 'INVALID_ARGUMENT', /holds 2 images .*--name can name only one/, { name: 'c' });
      }));

    test('the docker save is read twice; pass 2 writes only what the store lacks', () =>
      withEnv(async (env) => {
        const path = await file(env.dir, 'save.tar', await tarOf(dockerSaveFiles([{ image: plain, repoTags: ['a:1'] }])));
        const first = await env.run(path);
        assert.equal(first.storedBytes, plain.config.size + plain.layers.reduce((n, l) => n + l.size, 0) + first.images[0]!.manifest.size);
        assert.equal((await env.run(path)).storedBytes, 0);
      }));
  });

  describe('bad input', () => {
    test('random bytes, an empty file, an empty tar, a tar of other files, a missing path', () =>
      withEnv(async (env) => {
        const random = Buffer.alloc(4096);
        for (let i = 0; i < random.length; i++) random[i] = (i * 7919 + 13) & 0xff;
        await rejects(env, await file(env.dir, 'random.bin', random), 'INVALID_ARGUMENT', /is not a tar archive/);
        await rejects(env, await file(env.dir, 'empty', Buffer.alloc(0)), 'INVALID_ARGUMENT', /is not an image: the archive is empty/);
        await rejects(env, await file(env.dir, 'empty.tar', Buffer.alloc(10240)), 'INVALID_ARGUMENT', /is not an image: the archive is empty/);
        const other = await tarOf([{ name: 'etc/hostname', data: Buffer.from('x\n') }, { name: 'README', data: Buffer.from('hi') }]);
        await rejects(env, await file(env.dir, 'other.tar', other), 'INVALID_ARGUMENT', /neither index.json .* nor manifest.json/);
        await rejects(env, await file(env.dir, 'other.tar.gz', gzipSync(other)), 'INVALID_ARGUMENT', /neither index.json .* nor manifest.json/);
        const empty = join(env.dir, 'emptydir');
        await mkdir(empty);
        await rejects(env, empty, 'INVALID_ARGUMENT', /neither index.json/);
        await rejects(env, join(env.dir, 'nope.tar'), 'NOT_FOUND', /no such file/);
      }));

    test('a truncated archive and corrupt gzip data', () =>
      withEnv(async (env) => {
        const tar = await tarOf(layoutFiles(image, { imageName: 'a:1' }));
        await rejects(env, await file(env.dir, 'cut.tar', tar.subarray(0, Math.floor(tar.length / 2))), 'INVALID_ARGUMENT', /truncated|damaged/);
        const gz = gzipSync(tar);
        const bad = Buffer.from(gz);
        for (let i = 200; i < 260; i++) bad[i] = bad[i]! ^ 0x55;
        await rejects(env, await file(env.dir, 'bad.tar.gz', bad), 'INVALID_ARGUMENT', /corrupt gzip data|not a tar archive/);
        await rejects(env, await file(env.dir, 'cut.tar.gz', gz.subarray(0, gz.length - 100)), 'INVALID_ARGUMENT', /corrupt gzip data/);
      }));

    for (const kind of ['directory', 'archive'] as const) {
      const put = async (env: Env, files: ArchiveFile[]): Promise<string> => {
        if (kind === 'archive') return file(env.dir, 'image.tar', await tarOf(files));
        const dir = join(env.dir, 'layout');
        await writeDir(dir, files);
        return dir;
      };

      test(`${kind}: a blob whose bytes do not match its name`, () =>
        withEnv(async (env) => {
          const layer = image.layers[1]!.digest;
          const path = await put(env, layoutFiles(image, { imageName: 'a:1', corrupt: [layer] }));
          await rejects(env, path, 'DIGEST_MISMATCH', new RegExp(`${blobName(layer)}.* does not hold blob ${layer}: its bytes hash to sha256:`));
          assert.equal(await env.sys.content.info(layer), undefined, 'the bad blob is not visible');
        }));

      test(`${kind}: a missing blob`, () =>
        withEnv(async (env) => {
          const layer = image.layers[2]!.digest;
          await rejects(env, await put(env, layoutFiles(image, { imageName: 'a:1', omit: [layer] })), 'NOT_FOUND', new RegExp(`blob ${layer} \\(layer 2 of manifest ${image.digest}\\) is missing`));
        }));

      test(`${kind}: a missing manifest`, () =>
        withEnv(async (env) => {
          await rejects(env, await put(env, layoutFiles(image, { imageName: 'a:1', omit: [image.digest] })), 'NOT_FOUND', new RegExp(`blob ${image.digest} \\(manifest ${image.digest}\\) is missing`));
        }));

      test(`${kind}: a layer count that does not match the config's diff_ids`, async () => {
        const { blob } = await makeLayer([{ path: 'x', content: 'x' }], 'gzip', 'oci');
        const wrong = handmadeImage({ layers: [image.layers[0]!, blob], diffIds: [image.diffIds[0]!] });
        await withEnv(async (env) => {
          await rejects(env, await put(env, layoutFiles(wrong, { imageName: 'a:1' })), 'INVALID_MANIFEST', /has 2 layers but its config sha256:\w+ lists 1 diff_ids/);
        });
      });

      test(`${kind}: an unknown layer media type, and a config that is not an image config`, async () => {
        const odd = handmadeImage({ layers: image.layers, diffIds: image.diffIds, layerMediaType: 'application/x-berth-unknown' });
        const artifact = handmadeImage({ layers: image.layers, diffIds: image.diffIds, configMediaType: 'application/vnd.example.artifact+json' });
        await withEnv(async (env) => {
          await rejects(env, await put(env, layoutFiles(odd, { imageName: 'a:1' })), 'UNSUPPORTED', /layer 0 .* has unknown media type application\/x-berth-unknown/);
        });
        await withEnv(async (env) => {
          await rejects(env, await put(env, layoutFiles(artifact, { imageName: 'a:1' })), 'UNSUPPORTED', /config media type application\/vnd.example.artifact\+json/);
        });
      });

      test(`${kind}: an index.json entry of an unknown media type`, () =>
        withEnv(async (env) => {
          const odd = { ...image, mediaType: 'application/vnd.example.thing+json' };
          await rejects(env, await put(env, layoutFiles(odd, { imageName: 'a:1' })), 'UNSUPPORTED', /media type application\/vnd.example.thing\+json, which is neither an image manifest nor an index/);
        }));
    }

    test('an unsupported layout version; index.json without oci-layout', () =>
      withEnv(async (env) => {
        const v2 = join(env.dir, 'v2');
        await writeDir(v2, layoutFiles(image, { imageName: 'a:1', layoutVersion: '2.0.0' }));
        await rejects(env, v2, 'UNSUPPORTED', /imageLayoutVersion "2.0.0"/);
        const noLayout = await file(env.dir, 'nolayout.tar', await tarOf(layoutFiles(image, { imageName: 'a:1', noLayoutFile: true })));
        await rejects(env, noLayout, 'INVALID_ARGUMENT', /has index.json but no oci-layout file/);
      }));

    test('docker save: a layer that does not hash to its diffID, a layer count mismatch, a missing layer, a config not matching its name', () =>
      withEnv(async (env) => {
        const layer = plain.layers[1]!;
        const swapped = Buffer.from(layer.data);
        swapped[600] = swapped[600]! ^ 1;
        await rejects(env, await file(env.dir, 'a.tar', await tarOf(dockerSaveFiles([{ image: plain, repoTags: ['a:1'] }], { replaceLayer: new Map([[layer.digest, swapped]]) }))),
          'DIGEST_MISMATCH', new RegExp(`layer 1 \\(\\w+/layer.tar\\) hashes to sha256:\\w+ but config \\w+.json lists diff_ids\\[1\\] ${layer.digest}`));
        await rejects(env, await file(env.dir, 'b.tar', await tarOf(dockerSaveFiles([{ image: plain, repoTags: ['a:1'] }], { editManifest: (m) => m[0]!.Layers.pop() }))),
          'INVALID_MANIFEST', /manifest.json lists 1 layers but config \w+.json lists 2 diff_ids/);
        await rejects(env, await file(env.dir, 'c.tar', await tarOf(dockerSaveFiles([{ image: plain, repoTags: ['a:1'] }], { editManifest: (m) => (m[0]!.Layers[1] = 'nothere/layer.tar') }))),
          'NOT_FOUND', /layer 1 \(nothere\/layer.tar\) named by manifest.json is not in/);
        const renamed = dockerSaveFiles([{ image: plain, repoTags: ['a:1'] }], {
          editManifest: (m) => (m[0]!.Config = `${'0'.repeat(64)}.json`),
        }).map((f) => (f.name.endsWith('.json') && /^[a-f0-9]{64}\.json$/.test(f.name) ? { ...f, name: `${'0'.repeat(64)}.json` } : f));
        await rejects(env, await file(env.dir, 'd.tar', await tarOf(renamed)), 'DIGEST_MISMATCH', /config 0{64}.json does not hold what its name says/);
        await rejects(env, await file(env.dir, 'e.tar', await tarOf([{ name: 'manifest.json', data: Buffer.from('{"not":"a list"}') }])), 'INVALID_MANIFEST', /manifest.json: not a JSON array/);
      }));

    test('a docker save layer path that climbs out of the directory is refused', () =>
      withEnv(async (env) => {
        const dir = join(env.dir, 'tree');
        await writeDir(dir, dockerSaveFiles([{ image: plain, repoTags: ['a:1'] }], { editManifest: (m) => (m[0]!.Layers[0] = '../../etc/passwd') }));
        await rejects(env, dir, 'INVALID_MANIFEST', /points outside the image directory/);
      }));

    test('a classic docker save through a pipe cannot be read twice: a clear error', () =>
      withEnv(async (env) => {
        const { execFileSync } = await import('node:child_process');
        const fifo = join(env.dir, 'fifo');
        execFileSync('mkfifo', [fifo]);
        const tar = await tarOf(dockerSaveFiles([{ image: plain, repoTags: ['a:1'] }]));
        const { createWriteStream } = await import('node:fs');
        const writer = new Promise<void>((resolve) => {
          const w = createWriteStream(fifo);
          w.on('error', () => resolve());
          w.end(tar, () => resolve());
        });
        await rejects(env, fifo, 'INVALID_ARGUMENT', /not a regular file, and this archive's layers need a second read/);
        await writer;
      }));

    test('an OCI archive through a pipe imports in one pass', () =>
      withEnv(async (env) => {
        const { execFileSync } = await import('node:child_process');
        const { createWriteStream } = await import('node:fs');
        const fifo = join(env.dir, 'fifo');
        execFileSync('mkfifo', [fifo]);
        const tar = await tarOf(layoutFiles(image, { imageName: 'piped:1' }), { gzip: true });
        const w = createWriteStream(fifo);
        w.end(tar);
        const res = await env.run(fifo);
        assert.equal(res.images[0]!.record.target.digest, image.digest);
      }));
  });

  test('an image built by makeImage with many layers round-trips through a layout', () =>
    withEnv(async (env) => {
      const many = await makeImage({ layers: Array.from({ length: 12 }, (_, i) => [{ path: `f${i}`, content: `${i}` }]) });
      const path = await file(env.dir, 'many.tar', await tarOf(layoutFiles(many, { imageName: 'many:1' })));
      const res = await env.run(path);
      assert.deepEqual(await env.sys.metadata.content.references(res.images[0]!.manifest.digest), [many.config.digest, ...many.layers.map((l) => l.digest)]);
    }));
});
