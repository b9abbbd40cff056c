/**
 * `berth image import` and `berth image export` through the real CLI, against
 * the real tools on the other side: images pulled from Debian's
 * docker-registry are exported and read by skopeo and by `ctr import` on a
 * private containerd 1.6; archives written by skopeo are imported; a docker
 * save archive is named by the same manifest digest by berth and containerd;
 * round trips land on the same digest with a clean `content verify`; bad
 * input exits 1 naming the file; a SIGKILL mid-import converges on rerun.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { MediaType, sha256, type Digest } from '../../src/oci/index.js';
import { startContainerd, type Containerd } from '../bench/common/containerd.js';
import { busyboxImage, fixtureHostPlatform, makeImage, multiPlatformIndex, type FixtureImage, type FixtureIndex } from '../fixtures/images.js';
import { openTestSystem, runBerth, startBerth } from '../helpers/berth.js';
import { pushImage } from '../helpers/push.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { tempDir } from '../helpers/tmp.js';
import { dockerSaveFiles, layoutFiles, tarOf } from '../unit/images/archives.js';

const execFileP = promisify(execFile);

async function skopeo(args: string[]): Promise<string> {
  return (await execFileP('skopeo', ['--insecure-policy', ...args], { maxBuffer: 64 << 20 })).stdout;
}

async function ok(root: string, args: string[]): Promise<string> {
  const res = await runBerth(root, args);
  assert.equal(res.code, 0, `berth ${args.join(' ')}: ${res.stderr}`);
  return res.stdout;
}

/** `berth content verify` is clean and counts `n` blobs. */
async function verifyClean(root: string, n: number): Promise<void> {
  const out = await ok(root, ['content', 'verify']);
  assert.match(out, new RegExp(`^${n} blobs good, 0 corrupt$`, 'm'));
}

async function imageList(root: string): Promise<Array<{ name: string; digest: string; platform: string }>> {
  return JSON.parse(await ok(root, ['-o', 'json', 'image', 'ls'])) as Array<{ name: string; digest: string; platform: string }>;
}

describe('image import and export with real tools', () => {
  let reg: RegistryHandle;
  let work: { path: string; cleanup(): Promise<void> };
  let image: FixtureImage;
  let index: FixtureIndex;
  let hostImage: FixtureImage | undefined;
  let ctrd: Containerd;
  const host = fixtureHostPlatform();
  let n = 0;
  const fresh = async (): Promise<string> => {
    const p = join(work.path, `root-${n++}`);
    await mkdir(p);
    return p;
  };

  before(async () => {
    work = await tempDir('berth-transfer-');
    reg = await startRegistry();
    image = await busyboxImage({ extraLayers: 2 });
    index = await multiPlatformIndex();
    hostImage = index.images.find((i) => i.platform.architecture === host.architecture);
    await pushImage(reg.url, 'test/app', 'v1', image);
    await pushImage(reg.url, 'test/multi', 'v1', index);
    await mkdir(join(work.path, 'containerd'));
    ctrd = await startContainerd(join(work.path, 'containerd'));
  });
  after(async () => {
    await ctrd?.stop();
    await reg?.stop();
    await work?.cleanup();
  });

  test('pull → export: skopeo inspects and copies the archive with the right digest and layers', async () => {
    const root = await fresh();
    const ref = `${reg.host}/test/app:v1`;
    await ok(root, ['image', 'pull', '--no-unpack', ref]);
    const file = join(work.path, 'app.tar');
    const out = await ok(root, ['image', 'export', ref, file]);
    assert.match(out, new RegExp(`${ref} ${image.digest}`));
    assert.deepEqual((await readdir(work.path)).filter((f) => f.startsWith('app.tar')), ['app.tar'], 'no app.tar.tmp left');

    const inspected = JSON.parse(await skopeo(['inspect', `oci-archive:${file}`])) as { Digest: string; Layers: string[]; Architecture: string };
    assert.equal(inspected.Digest, image.digest);
    assert.deepEqual(inspected.Layers, image.layers.map((l) => l.digest));
    // ref.name is the tag, as containerd writes it; skopeo finds the image by it.
    assert.equal((JSON.parse(await skopeo(['inspect', `oci-archive:${file}:v1`])) as { Digest: string }).Digest, image.digest);

    const dir = join(work.path, 'skopeo-app');
    await skopeo(['copy', `oci-archive:${file}`, `oci:${dir}`]);
    const copied = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
    assert.deepEqual(copied.manifests.map((m) => m.digest), [image.digest]);
    for (const l of image.layers) await stat(join(dir, 'blobs', 'sha256', l.digest.slice(7)));
  });

  test('an exported index: skopeo picks the host platform; only what was pulled is in the archive', async (t) => {
    if (!hostImage) return t.diagnostic(`host architecture ${host.architecture} is not in the fixture index`);
    const root = await fresh();
    const ref = `${reg.host}/test/multi:v1`;
    await ok(root, ['image', 'pull', '--no-unpack', ref]);
    const file = join(work.path, 'multi.tar');
    await ok(root, ['image', 'export', ref, file]);
    const inspected = JSON.parse(await skopeo(['inspect', `oci-archive:${file}`])) as { Digest: string; Layers: string[] };
    assert.equal(inspected.Digest, index.digest);
    assert.deepEqual(inspected.Layers, hostImage.layers.map((l) => l.digest));
    const dir = join(work.path, 'skopeo-multi');
    await skopeo(['copy', `oci-archive:${file}`, `oci:${dir}`]);
    const copied = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
    assert.deepEqual(copied.manifests.map((m) => m.digest), [hostImage.digest]);
  });

  test('ctr import (containerd 1.6) accepts exported archives: ctr images ls lists each name with its digest', async (t) => {
    const root = await fresh();
    const refs: Array<[string, Digest]> = [[`${reg.host}/test/app:v1`, image.digest]];
    if (hostImage) refs.push([`${reg.host}/test/multi:v1`, index.digest]);
    else t.diagnostic(`host architecture ${host.architecture} is not in the fixture index`);
    for (const [ref, digest] of refs) {
      await ok(root, ['image', 'pull', '--no-unpack', ref]);
      const file = join(work.path, `ctr-${sha256(ref).slice(7, 15)}.tar`);
      await ok(root, ['image', 'export', ref, file]);
      const out = await ctrd.ctr(['images', 'import', ...(ref.endsWith('app:v1') ? ['--all-platforms'] : []), file]);
      assert.match(out, new RegExp(`unpacking ${ref} \\(${digest}\\)\\.\\.\\.done`));
      const ls = await ctrd.ctr(['images', 'ls']);
      const line = ls.split('\n').find((l) => l.startsWith(`${ref} `));
      assert.ok(line, `ctr images ls lists ${ref}:\n${ls}`);
      assert.ok(line.includes(digest), line);
    }
  });

  test('round trip through the CLI: pull → export (gzip\'d by the user too) → import into a fresh root: same digest, verify clean', async () => {
    const src = await fresh();
    const ref = `${reg.host}/test/app:v1`;
    await ok(src, ['image', 'pull', '--no-unpack', ref]);
    const file = join(work.path, 'round.tar');
    await ok(src, ['image', 'export', ref, file]);
    execFileSync('gzip', ['-k', '-6', file]);
    for (const input of [file, `${file}.gz`]) {
      const dst = await fresh();
      const res = JSON.parse(await ok(dst, ['-o', 'json', 'image', 'import', input])) as { format: string; images: Array<{ name: string; digest: string; platform: string }> };
      assert.equal(res.format, 'oci-archive');
      assert.deepEqual(res.images.map((i) => [i.name, i.digest]), [[ref, image.digest]]);
      assert.deepEqual((await imageList(dst)).map((i) => [i.name, i.digest]), [[ref, image.digest]]);
      await verifyClean(dst, 2 + image.layers.length);
      // and back out again: the same archive, byte for byte
      const again = join(work.path, `again-${n}.tar`);
      await ok(dst, ['image', 'export', ref, again]);
      assert.ok((await readFile(again)).equals(await readFile(file)));
    }
  });

  test('an archive written by skopeo imports, and --name names it', async () => {
    const src = await fresh();
    const ref = `${reg.host}/test/app:v1`;
    await ok(src, ['image', 'pull', '--no-unpack', ref]);
    const ours = join(work.path, 'for-skopeo.tar');
    await ok(src, ['image', 'export', ref, ours]);
    const theirs = join(work.path, 'by-skopeo.tar');
    await skopeo(['copy', `oci-archive:${ours}`, `oci-archive:${theirs}:example.com/team/app:2`]);
    const dst = await fresh();
    assert.match(await ok(dst, ['image', 'import', theirs]), new RegExp(`^example.com/team/app:2 ${image.digest}$`, 'm'));
    assert.match(await ok(dst, ['image', 'import', '--name', 'local/app', theirs]), new RegExp(`^docker.io/local/app:latest ${image.digest}$`, 'm'));
    await verifyClean(dst, 2 + image.layers.length);
  });

  test('a docker save archive: berth and containerd name it by the same synthesised manifest digest', async () => {
    const plain = await busyboxImage({ format: 'docker', compression: 'none', extraLayers: 1 });
    const distinct = await makeImage({ format: 'docker', compression: 'none', layers: [[{ path: 'saved', content: randomBytes(4096).toString('hex') }]] });
    const file = join(work.path, 'save.tar');
    await writeFile(file, await tarOf(dockerSaveFiles([{ image: distinct, repoTags: ['example.com/saved:1'] }, { image: plain, repoTags: ['example.com/plain:1'] }])));
    // A containerd of its own: it reuses compressed layers it already holds, which would change its manifest.
    const dir = join(work.path, 'containerd-save');
    await mkdir(dir);
    const own = await startContainerd(dir);
    try {
      await own.ctr(['images', 'import', file]);
      const ls = await own.ctr(['images', 'ls']);
      const dst = await fresh();
      const res = JSON.parse(await ok(dst, ['-o', 'json', 'image', 'import', file])) as { format: string; images: Array<{ name: string; digest: string }> };
      assert.equal(res.format, 'docker-archive');
      assert.equal(res.images.length, 2);
      for (const i of res.images) {
        const line = ls.split('\n').find((l) => l.startsWith(`${i.name} `));
        assert.ok(line, `containerd imported ${i.name}:\n${ls}`);
        assert.ok(line.includes(`${MediaType.dockerManifest} ${i.digest}`), `containerd: ${line}; berth: ${i.digest}`);
      }
      await verifyClean(dst, 2 * 2 + distinct.layers.length + plain.layers.length);
    } finally {
      await own.stop();
    }
  });

  test('bad input through the CLI: exit 1, the file named, nothing recorded, no ingest left', async () => {
    const cases: Array<[string, Buffer, RegExp]> = [
      ['random.bin', randomBytes(3000), /is not a tar archive/],
      ['empty.tar', Buffer.alloc(10240), /is not an image: the archive is empty/],
      ['no-index.tar', await tarOf([{ name: 'etc/hostname', data: Buffer.from('x') }]), /neither index.json .* nor manifest.json/],
      ['corrupt-blob.tar', await tarOf(layoutFiles(image, { imageName: 'a:1', corrupt: [image.layers[0]!.digest] })), /does not hold blob/],
      ['missing-blob.tar', await tarOf(layoutFiles(image, { imageName: 'a:1', omit: [image.config.digest] })), /is missing/],
      ['unnamed.tar', await tarOf(layoutFiles(image)), /carries no image name/],
    ];
    for (const [name, data, problem] of cases) {
      // A root each: blobs a failed import verified stay (leased) and would satisfy the next case.
      const root = await fresh();
      const path = join(work.path, name);
      await writeFile(path, data);
      const res = await runBerth(root, ['image', 'import', path]);
      assert.equal(res.code, 1, `${name}: ${res.stderr}`);
      assert.ok(res.stderr.includes(path), `${name}: stderr names the file: ${res.stderr}`);
      assert.match(res.stderr, problem);
      assert.match(res.stderr, /^berth: error: /m);
      assert.deepEqual(await imageList(root), []);
      const { sys } = await openTestSystem(root);
      try {
        assert.deepEqual(await sys.content.ingests(), []);
      } finally {
        await sys.close();
      }
      await ok(root, ['content', 'verify']);
    }
    const root = await fresh();
    const usage = await runBerth(root, ['image', 'export', 'a:1']);
    assert.equal(usage.code, 1);
    assert.match(usage.stderr, /usage: berth image export REF FILE/);
    const missing = await runBerth(root, ['image', 'export', 'nothere:1', join(work.path, 'x.tar')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /image docker.io\/library\/nothere:1 not found/);
  });

  test('export to stdout (-) writes the same archive as to a file', async () => {
    const root = await fresh();
    const ref = `${reg.host}/test/app:v1`;
    await ok(root, ['image', 'pull', '--no-unpack', ref]);
    const file = join(work.path, 'file.tar');
    await ok(root, ['image', 'export', ref, file]);
    const { child, done } = startBerth(root, ['image', 'export', ref, '-']);
    const chunks: Buffer[] = [];
    child.stdout!.removeAllListeners('data');
    child.stdout!.on('data', (c: Buffer) => chunks.push(c));
    const res = await done;
    assert.equal(res.code, 0, res.stderr);
    assert.ok(Buffer.concat(chunks).equals(await readFile(file)));
  });

  test('SIGKILL during an import, then a rerun: converges, no partial blob visible, verify clean', async () => {
    // One big incompressible layer, uncompressed in the archive, fed through a pipe so the kill lands mid-blob.
    const big = await makeImage({ compression: 'none', layers: [[{ path: 'big', content: randomBytes(24 << 20) }], [{ path: 'small', content: 'x' }]] });
    const tar = await tarOf(layoutFiles(big, { imageName: 'example.com/big:1' }));
    const bigLayer = big.layers[0]!;
    const file = join(work.path, 'big.tar');
    await writeFile(file, tar);
    const fifo = join(work.path, 'big.fifo');
    execFileSync('mkfifo', [fifo]);
    const root = await fresh();

    const { child, done } = startBerth(root, ['image', 'import', fifo]);
    const feed = createWriteStream(fifo);
    feed.on('error', () => {}); // EPIPE once the reader is killed
    const start = tar.indexOf(bigLayer.data.subarray(0, 4096));
    assert.ok(start > 0, 'fixture: the big layer is in the tar');
    feed.write(tar.subarray(0, start + (bigLayer.size >> 1)));
    // Wait until the ingest holds part of the layer, then kill.
    const ingest = join(root, 'lib', 'content', 'ingest');
    const deadline = Date.now() + 20_000;
    for (;;) {
      const sizes = await Promise.all((await readdir(ingest).catch(() => [])).map((d) => stat(join(ingest, d, 'data')).then((s) => s.size, () => 0)));
      if (sizes.some((s) => s > 1 << 20)) break;
      assert.ok(Date.now() < deadline, 'the import never started writing the layer');
      await sleep(10);
    }
    child.kill('SIGKILL');
    const killed = await done;
    feed.destroy();
    assert.equal(killed.signal, 'SIGKILL');
    assert.deepEqual(await imageList(root), [], 'nothing named after the kill');
    const blobs: string[] = await readdir(join(root, 'lib', 'content', 'blobs', 'sha256')).catch(() => []);
    assert.ok(!blobs.includes(bigLayer.digest.slice(7)), 'the half-written layer is not a blob');

    assert.match(await ok(root, ['image', 'import', file]), new RegExp(`^example.com/big:1 ${big.digest}$`, 'm'));
    await verifyClean(root, 2 + big.layers.length);
    const { sys } = await openTestSystem(root);
    try {
      assert.deepEqual(await sys.content.ingests(), [], 'the killed ingest was taken over and committed');
      assert.equal((await sys.metadata.images.get('example.com/big:1'))?.target.digest, big.digest);
    } finally {
      await sys.close();
    }
  });

  test('SIGKILL while a docker save\'s layers are written (pass 2), then a rerun: converges, verify clean', async () => {
    const big = await makeImage({ format: 'docker', compression: 'none', layers: [[{ path: 'big', content: randomBytes(64 << 20) }], [{ path: 'small', content: 'y' }]] });
    const file = join(work.path, 'big-save.tar');
    await writeFile(file, await tarOf(dockerSaveFiles([{ image: big, repoTags: ['example.com/big-save:1'] }])));
    const root = await fresh();
    const { child, done } = startBerth(root, ['image', 'import', file]);
    const ingest = join(root, 'lib', 'content', 'ingest');
    const deadline = Date.now() + 30_000;
    let caught = false;
    while (Date.now() < deadline && child.exitCode === null) {
      const sizes = await Promise.all((await readdir(ingest).catch(() => [])).map((d) => stat(join(ingest, d, 'data')).then((s) => s.size, () => 0)));
      if (sizes.some((s) => s > 1 << 20)) {
        child.kill('SIGKILL');
        caught = true;
        break;
      }
      await sleep(2);
    }
    const killed = await done;
    assert.ok(caught && killed.signal === 'SIGKILL', `the kill must land while the layer is written (exit ${killed.code}): ${killed.stderr}`);
    assert.deepEqual(await imageList(root), []);
    assert.match(await ok(root, ['image', 'import', file]), /^example.com\/big-save:1 sha256:/m);
    await verifyClean(root, 2 + big.layers.length);
  });
});
