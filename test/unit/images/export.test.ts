/**
 * ImageExporter in-process: the OCI archive's layout (oci-layout, index.json
 * with the name annotations, exactly the blobs the image references), its
 * determinism, atomic writes, and the round trip back through ImageImporter.
 */
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { before, describe, test } from 'node:test';
import { extract as tarExtract } from 'tar-stream';
import { isBerthError } from '../../../src/errors.js';
import { canonicalName, ImageExporter, ImageImporter, PlatformLabel } from '../../../src/images/index.js';
import { RefLabel } from '../../../src/metadata/store.js';
import { MediaType, sha256, type Digest } from '../../../src/oci/index.js';
import type { System } from '../../../src/system.js';
import { busyboxImage, multiPlatformIndex, type FixtureImage, type FixtureIndex } from '../../fixtures/images.js';
import { openTestSystem } from '../../helpers/berth.js';
import { tempDir } from '../../helpers/tmp.js';
import { fixtureBlobs } from './archives.js';

async function withSystems(fn: (dir: string, open: (name: string) => Promise<System>) => Promise<void>): Promise<void> {
  const tmp = await tempDir('berth-export-');
  const opened: System[] = [];
  try {
    await fn(tmp.path, async (name) => {
      const { sys } = await openTestSystem(join(tmp.path, name));
      opened.push(sys);
      return sys;
    });
  } finally {
    for (const s of opened) await s.close();
    await tmp.cleanup();
  }
}

/** Stores an image as a pull would: blobs, reference labels, the name. For an index, only `platformImage` is stored. */
async function seed(sys: System, name: string, img: FixtureImage | FixtureIndex, platformImage?: FixtureImage): Promise<void> {
  const manifest = 'images' in img ? platformImage! : img;
  const blobs = fixtureBlobs(manifest);
  if ('images' in img) blobs.set(img.digest, img.index);
  for (const [digest, data] of blobs) await sys.content.put({ digest, size: data.length }, data);
  await sys.metadata.content.set(manifest.digest, {
    [RefLabel.config]: manifest.config.digest,
    ...Object.fromEntries(manifest.layers.map((l, i) => [RefLabel.layer(i), l.digest])),
  });
  if ('images' in img) await sys.metadata.content.set(img.digest, { [RefLabel.manifest(0)]: manifest.digest });
  await sys.metadata.images.put({ name: canonicalName(name), target: { mediaType: img.mediaType, digest: img.digest, size: img.size }, labels: { [PlatformLabel]: 'linux/amd64' } });
}

/** The members of a tar, in order, with their bytes. */
async function readTar(bytes: Buffer): Promise<Array<{ name: string; type: string; mode: number; data: Buffer }>> {
  const out: Array<{ name: string; type: string; mode: number; data: Buffer }> = [];
  const ex = tarExtract();
  const fed = pipeline(Readable.from([bytes]), ex);
  for await (const e of ex) {
    const chunks: Buffer[] = [];
    for await (const c of e) chunks.push(c as Buffer);
    out.push({ name: e.header.name, type: e.header.type, mode: e.header.mode, data: Buffer.concat(chunks) });
  }
  await fed;
  return out;
}

function exporter(sys: System): ImageExporter {
  return new ImageExporter({ content: sys.content, metadata: sys.metadata, logger: sys.logger });
}

describe('image export', () => {
  let image: FixtureImage;
  let index: FixtureIndex;
  before(async () => {
    image = await busyboxImage({ extraLayers: 2 });
    index = await multiPlatformIndex();
  });

  test('an OCI archive: oci-layout, index.json naming the image as containerd does, every blob once', () =>
    withSystems(async (dir, open) => {
      const sys = await open('a');
      await seed(sys, 'registry.example:5000/team/app:1.4', image);
      const file = join(dir, 'app.tar');
      const res = await exporter(sys).exportToFile('registry.example:5000/team/app:1.4', file);
      const bytes = await readFile(file);
      assert.equal(res.bytes, bytes.length);
      const members = await readTar(bytes);
      assert.deepEqual(members.map((m) => m.name), [
        'oci-layout',
        'index.json',
        'blobs/',
        'blobs/sha256/',
        ...[image.digest, image.config.digest, ...image.layers.map((l) => l.digest)].map((d) => `blobs/sha256/${d.slice(7)}`),
      ]);
      assert.deepEqual(JSON.parse(members[0]!.data.toString()), { imageLayoutVersion: '1.0.0' });
      assert.deepEqual(JSON.parse(members[1]!.data.toString()), {
        schemaVersion: 2,
        mediaType: MediaType.ociIndex,
        manifests: [{
          mediaType: image.mediaType,
          digest: image.digest,
          size: image.size,
          annotations: { 'io.containerd.image.name': 'registry.example:5000/team/app:1.4', 'org.opencontainers.image.ref.name': '1.4' },
        }],
      });
      for (const m of members.filter((m) => m.type === 'file' && m.name.startsWith('blobs/'))) {
        assert.equal(sha256(m.data), `sha256:${m.name.split('/')[2]}`, `${m.name} holds its blob`);
      }
      assert.deepEqual(await readdir(dir), ['a', 'app.tar'], 'no temporary file left');
    }));

  test('an index: the index, and only the platform manifest that was pulled, with its blobs', () =>
    withSystems(async (dir, open) => {
      const sys = await open('a');
      const amd = index.images.find((i) => i.platform.architecture === 'amd64')!;
      const arm = index.images.find((i) => i.platform.architecture === 'arm64')!;
      await seed(sys, 'example.com/multi:1', index, amd);
      const res = await exporter(sys).exportToFile('example.com/multi:1', join(dir, 'multi.tar'));
      assert.equal(res.target.digest, index.digest);
      assert.deepEqual(res.blobs.map((b) => b.digest), [index.digest, amd.digest, amd.config.digest, ...amd.layers.map((l) => l.digest)]);
      const names = (await readTar(await readFile(join(dir, 'multi.tar')))).map((m) => m.name);
      assert.ok(names.includes(`blobs/sha256/${index.digest.slice(7)}`));
      for (const d of [amd.digest, amd.config.digest]) assert.ok(names.includes(`blobs/sha256/${d.slice(7)}`), `${d} exported`);
      assert.ok(!names.includes(`blobs/sha256/${arm.digest.slice(7)}`), 'the other platform is not exported');
    }));

  test('same image, same bytes', () =>
    withSystems(async (dir, open) => {
      const sys = await open('a');
      await seed(sys, 'a:1', image);
      await exporter(sys).exportToFile('a:1', join(dir, 'one.tar'));
      await exporter(sys).exportToFile('a:1', join(dir, 'two.tar'));
      assert.ok((await readFile(join(dir, 'one.tar'))).equals(await readFile(join(dir, 'two.tar'))));
    }));

  test('a missing blob or an unknown name: NOT_FOUND, and neither FILE nor FILE.tmp is left', () =>
    withSystems(async (dir, open) => {
      const sys = await open('a');
      await seed(sys, 'a:1', image);
      await sys.content.delete(image.layers[1]!.digest);
      const file = join(dir, 'out.tar');
      await assert.rejects(exporter(sys).exportToFile('a:1', file), (err: unknown) => isBerthError(err, 'NOT_FOUND') && err.message.includes(`layer 1 of manifest ${image.digest} ${image.layers[1]!.digest}`));
      await assert.rejects(exporter(sys).exportToFile('nothere:1', file), (err: unknown) => isBerthError(err, 'NOT_FOUND') && /image docker.io\/library\/nothere:1 not found/.test(err.message));
      assert.deepEqual(await readdir(dir), ['a']);
    }));

  test('a failure while writing removes FILE.tmp and keeps an existing FILE', () =>
    withSystems(async (dir, open) => {
      const sys = await open('a');
      await seed(sys, 'a:1', image);
      const file = join(dir, 'out.tar');
      await writeFile(file, 'previous');
      // A blob that vanishes after the plan checked it: the read fails mid-archive.
      const content = sys.content;
      const flaky = Object.create(content) as typeof content;
      flaky.reader = async (d: Digest, o?: { start?: number }) => {
        if (d === image.layers[2]!.digest) throw new Error('disk on fire');
        return content.reader(d, o);
      };
      const ex = new ImageExporter({ content: flaky, metadata: sys.metadata, logger: sys.logger });
      await assert.rejects(ex.exportToFile('a:1', file), /disk on fire/);
      assert.equal(await readFile(file, 'utf8'), 'previous');
      assert.deepEqual((await readdir(dir)).sort(), ['a', 'out.tar']);
    }));

  test('round trip: export, import into a fresh root: same digest, same references, every blob verifies', () =>
    withSystems(async (dir, open) => {
      const amd = index.images.find((i) => i.platform.architecture === 'amd64')!;
      for (const [name, canonical, img, platformImage] of [
        ['a:1', 'docker.io/library/a:1', image, undefined],
        ['example.com/multi:2', 'example.com/multi:2', index, amd],
      ] as const) {
        const src = await open(`src-${name}`);
        await seed(src, name, img, platformImage);
        const file = join(dir, `${img.digest.slice(7, 15)}.tar`);
        await exporter(src).exportToFile(name, file);
        const dst = await open(`dst-${name}`);
        const importer = new ImageImporter({ content: dst.content, metadata: dst.metadata, events: dst.events, logger: dst.logger, hostPlatform: { os: 'linux', architecture: 'amd64' } });
        const res = await importer.import(file);
        assert.deepEqual(res.images.map((i) => i.record.name), [canonical]);
        assert.equal(res.images[0]!.record.target.digest, img.digest);
        const blobs: Digest[] = [];
        for await (const b of dst.content.list()) {
          blobs.push(b.digest);
          assert.ok(await dst.content.verify(b.digest));
        }
        const expected = [...fixtureBlobs(platformImage ?? image).keys(), ...(platformImage ? [index.digest] : [])].sort();
        assert.deepEqual(blobs.sort(), expected);
        const manifest = (platformImage ?? image) as FixtureImage;
        assert.deepEqual(await dst.metadata.content.references(manifest.digest), await src.metadata.content.references(manifest.digest));
      }
    }));
});
