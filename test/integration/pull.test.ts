/**
 * `berth image pull` end to end against Debian's docker-registry: formats,
 * platforms, auth, and every fault the issue lists, through the real CLI
 * where the exit code matters and in-process where events and logs matter.
 */
import assert from 'node:assert/strict';
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isBerthError } from '../../src/errors.js';
import type { Digest } from '../../src/oci/digest.js';
import { busyboxImage, makeImage, multiPlatformIndex, type FixtureImage, type FixtureIndex } from '../fixtures/images.js';
import { openTestSystem, runBerth, startBerth } from '../helpers/berth.js';
import { startFaultProxy, type FaultProxy } from '../helpers/faultproxy.js';
import { pushImage } from '../helpers/push.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { withTempDir } from '../helpers/tmp.js';
import { seededBytes } from '../fixtures/edge-images.js';

async function blobsOnDisk(root: string): Promise<string[]> {
  return (await readdir(join(root, 'lib', 'content', 'blobs', 'sha256')).catch(() => [])).map((h) => `sha256:${h}`).sort();
}

function blobDigests(img: FixtureImage): string[] {
  return [img.digest, img.config.digest, ...img.layers.map((l) => l.digest)];
}

const withRoot = <T>(fn: (root: string) => Promise<T>): Promise<T> => withTempDir('berth-pull-', fn);

/** Writes a Docker config.json with credentials for host under root/docker. */
async function dockerLogin(root: string, host: string, username: string, password: string): Promise<void> {
  await mkdir(join(root, 'docker'), { recursive: true });
  const auth = Buffer.from(`${username}:${password}`).toString('base64');
  await writeFile(join(root, 'docker', 'config.json'), JSON.stringify({ auths: { [host]: { auth } } }));
}

describe('image pull from a real registry', () => {
  let reg: RegistryHandle;
  let oci: FixtureImage;
  let docker: FixtureImage;
  let plain: FixtureImage;
  let index: FixtureIndex;

  before(async () => {
    reg = await startRegistry();
    oci = await busyboxImage({ format: 'oci', compression: 'gzip', extraLayers: 3 });
    docker = await busyboxImage({ format: 'docker', compression: 'gzip', extraLayers: 2 });
    plain = await busyboxImage({ format: 'oci', compression: 'none', extraLayers: 1 });
    index = await multiPlatformIndex();
    await pushImage(reg.url, 'test/oci', 'v1', oci);
    await pushImage(reg.url, 'test/docker', 'v1', docker);
    await pushImage(reg.url, 'test/plain', 'v1', plain);
    await pushImage(reg.url, 'test/multi', 'v1', index);
  });
  after(() => reg.stop());

  for (const [label, repo, img] of [
    ['multi-layer OCI gzip', 'test/oci', () => oci],
    ['Docker schema2', 'test/docker', () => docker],
    ['uncompressed OCI', 'test/plain', () => plain],
  ] as const) {
    test(`pulls a ${label} image: every blob stored, name recorded, references labelled`, () =>
      withRoot(async (root) => {
        const image = img();
        const res = await runBerth(root, ['image', 'pull', `${reg.host}/${repo}:v1`]);
        assert.equal(res.code, 0, res.stderr);
        assert.deepEqual(await blobsOnDisk(root), blobDigests(image).sort());
        const { sys } = await openTestSystem(root);
        try {
          const rec = await sys.metadata.images.get(`${reg.host}/${repo}:v1`);
          assert.equal(rec?.target.digest, image.digest);
          assert.equal(rec?.target.mediaType, image.mediaType);
          const refs = await sys.metadata.content.references(image.digest);
          assert.deepEqual(refs, [image.config.digest, ...image.layers.map((l) => l.digest)]);
        } finally {
          await sys.close();
        }
        const verify = await runBerth(root, ['content', 'verify']);
        assert.equal(verify.code, 0, verify.stderr);
        assert.match(verify.stdout, new RegExp(`${blobDigests(image).length} blobs good, 0 corrupt`));
      }));
  }

  test('an index pulls only the requested platform (--platform linux/arm64 matches arm64/v8)', () =>
    withRoot(async (root) => {
      const arm = index.images.find((i) => i.platform.architecture === 'arm64')!;
      const amd = index.images.find((i) => i.platform.architecture === 'amd64')!;
      const res = await runBerth(root, ['image', 'pull', '--platform', 'linux/arm64', `${reg.host}/test/multi:v1`]);
      assert.equal(res.code, 0, res.stderr);
      const blobs = await blobsOnDisk(root);
      assert.deepEqual(blobs, [index.digest, ...blobDigests(arm)].sort());
      const armBlobs = new Set(blobDigests(arm));
      const amdOnly = [amd.digest, amd.config.digest, ...amd.layers.map((l) => l.digest)].filter((d) => !armBlobs.has(d));
      assert.ok(amdOnly.length >= 2, 'fixture: the amd64 image has blobs of its own');
      for (const d of amdOnly) assert.ok(!blobs.includes(d), `amd64 blob ${d} must not be fetched`);
      const ls = await runBerth(root, ['-o', 'json', 'image', 'ls']);
      const list = JSON.parse(ls.stdout) as Array<{ name: string; digest: string; platform: string; size: number }>;
      assert.equal(list.length, 1);
      assert.equal(list[0]!.digest, index.digest);
      assert.equal(list[0]!.platform, 'linux/arm64');
      assert.equal(list[0]!.size, index.size + arm.size + arm.config.size + arm.layers.reduce((a, l) => a + l.size, 0));
      const { sys } = await openTestSystem(root);
      try {
        assert.deepEqual(await sys.metadata.content.references(index.digest), [arm.digest], 'index labelled with the pulled manifest');
      } finally {
        await sys.close();
      }
    }));

  test('no matching platform: exit 1 and the error lists what is available', () =>
    withRoot(async (root) => {
      const res = await runBerth(root, ['image', 'pull', '--platform', 'linux/s390x', `${reg.host}/test/multi:v1`]);
      assert.equal(res.code, 1);
      assert.match(res.stderr, /linux\/s390x/);
      assert.match(res.stderr, /linux\/amd64/);
      assert.match(res.stderr, /linux\/arm64/);
      assert.doesNotMatch(res.stderr, /\n\s+at /, 'no stack trace without --log-level debug');
    }));

  test('manifest unknown: NOT_FOUND naming host and ref', () =>
    withRoot(async (root) => {
      const res = await runBerth(root, ['image', 'pull', `${reg.host}/test/oci:nope`]);
      assert.equal(res.code, 1);
      assert.match(res.stderr, new RegExp(reg.host.replace(/\./g, '\\.')));
      assert.match(res.stderr, /nope/);
      assert.deepEqual(await blobsOnDisk(root), []);
      // Nothing was downloaded, so no lease stays behind to hold back garbage collection for a day.
      const { sys } = await openTestSystem(root);
      try {
        assert.deepEqual(await sys.metadata.leases.list(), []);
      } finally {
        await sys.close();
      }
    }));

  test('unknown host: exit 1, UNAVAILABLE naming the host', () =>
    withRoot(async (root) => {
      const { sys } = await openTestSystem(root);
      try {
        await assert.rejects((await sys.puller()).pull('127.0.0.1:1/test/oci:v1'), (err: unknown) => {
          assert.ok(isBerthError(err, 'UNAVAILABLE'), String(err));
          assert.match((err as Error).message, /127\.0\.0\.1:1/);
          return true;
        });
      } finally {
        await sys.close();
      }
    }));

  test('a second pull fetches nothing; image ls, inspect and rm work', () =>
    withRoot(async (root) => {
      const { sys, events } = await openTestSystem(root);
      try {
        const first = await (await sys.puller()).pull(`${reg.host}/test/oci:v1`);
        assert.ok(first.fetchedBytes > 0);
        const second = await (await sys.puller()).pull(`${reg.host}/test/oci:v1`);
        assert.equal(second.fetchedBytes, 0);
        assert.ok(events.some((e) => e.type === 'pull.layer.done' && e.cached));
        const detail = await sys.images.inspect(`${reg.host}/test/oci:v1`);
        assert.equal(detail.manifest?.layers.length, oci.layers.length);
        assert.equal(detail.config?.rootfs.diff_ids.length, oci.layers.length);
      } finally {
        await sys.close();
      }
      const rm = await runBerth(root, ['image', 'rm', `${reg.host}/test/oci:v1`]);
      assert.equal(rm.code, 0, rm.stderr);
      const again = await runBerth(root, ['image', 'rm', `${reg.host}/test/oci:v1`]);
      assert.equal(again.code, 1);
      assert.match(again.stderr, /not found/);
    }));

  test('two concurrent pulls of the same image fetch each blob once', () =>
    withRoot(async (root) => {
      const proxy = await startFaultProxy(reg.host);
      const { sys } = await openTestSystem(root);
      try {
        const ref = `${proxy.host}/test/oci:v1`;
        const [a, b] = await Promise.all([(await sys.puller()).pull(ref), (await sys.puller()).pull(ref)]);
        assert.equal(a.record.target.digest, b.record.target.digest);
        for (const d of [oci.config.digest, ...oci.layers.map((l) => l.digest)]) {
          const gets = proxy.requests.filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${d}`));
          assert.equal(gets.length, 1, `blob ${d} fetched ${gets.length} times`);
        }
      } finally {
        await sys.close();
        await proxy.stop();
      }
    }));
});

describe('image pull with authentication', () => {
  test('Basic auth: credentials from Docker config.json; wrong ones → UNAUTHORIZED, never echoed', async () => {
    const password = 'Pa55-very-secret-basic';
    const reg = await startRegistry({ auth: 'basic', username: 'alice', password });
    try {
      const img = await busyboxImage({ extraLayers: 1 });
      await pushImage(reg.url, 'auth/basic', 'v1', img, { username: 'alice', password });
      await withRoot(async (root) => {
        const anon = await runBerth(root, ['image', 'pull', `${reg.host}/auth/basic:v1`]);
        assert.equal(anon.code, 1);
        assert.match(anon.stderr, /unauthori[sz]ed|401|credentials/i);
        await dockerLogin(root, reg.host, 'alice', 'wrong-password-123');
        const wrong = await runBerth(root, ['--log-level', 'debug', 'image', 'pull', `${reg.host}/auth/basic:v1`]);
        assert.equal(wrong.code, 1);
        assert.ok(!wrong.stderr.includes('wrong-password-123'), 'password leaked into output');
        assert.ok(!wrong.stderr.includes(Buffer.from('alice:wrong-password-123').toString('base64')), 'credentials leaked');
        await dockerLogin(root, reg.host, 'alice', password);
        const ok = await runBerth(root, ['--log-level', 'debug', 'image', 'pull', `${reg.host}/auth/basic:v1`]);
        assert.equal(ok.code, 0, ok.stderr);
        assert.ok(!(ok.stdout + ok.stderr).includes(password), 'password leaked into output');
        assert.deepEqual(await blobsOnDisk(root), blobDigests(img).sort());
      });
    } finally {
      await reg.stop();
    }
  });

  test('Bearer token auth: challenge flow, one token per scope, secrets never logged', async () => {
    const password = 'Token-flow-secret-42';
    const reg = await startRegistry({ auth: 'bearer', username: 'bob', password });
    try {
      const img = await busyboxImage({ extraLayers: 2 });
      await pushImage(reg.url, 'auth/bearer', 'v1', img, { username: 'bob', password });
      await withRoot(async (root) => {
        await dockerLogin(root, reg.host, 'bob', password);
        const issuedBefore = reg.tokenServer!.issued();
        const { sys, logs, events } = await openTestSystem(root, { dockerConfig: join(root, 'docker') });
        try {
          const res = await (await sys.puller()).pull(`${reg.host}/auth/bearer:v1`);
          assert.equal(res.record.target.digest, img.digest);
        } finally {
          await sys.close();
        }
        const issued = reg.tokenServer!.issued() - issuedBefore;
        assert.ok(issued >= 1 && issued <= 2, `tokens issued: ${issued}`);
        const req = reg.tokenServer!.requests.at(-1)!;
        assert.equal(req.query.service, 'berth-test-registry');
        assert.match(req.query.scope ?? '', /repository:auth\/bearer:pull/);
        const dump = JSON.stringify(logs) + JSON.stringify(events);
        assert.ok(!dump.includes(password));
        assert.ok(!dump.includes(Buffer.from(`bob:${password}`).toString('base64')));
        assert.doesNotMatch(dump, /eyJ[A-Za-z0-9_-]{10,}\./, 'a JWT leaked into logs or events');
      });
    } finally {
      await reg.stop();
    }
  });
});

describe('image pull under faults (registry front)', () => {
  let reg: RegistryHandle;
  let proxy: FaultProxy;
  let img: FixtureImage;
  let big: FixtureImage;

  before(async () => {
    reg = await startRegistry();
    proxy = await startFaultProxy(reg.host);
    img = await busyboxImage({ extraLayers: 2 });
    // One layer of ~4 MiB of incompressible bytes, so a cut lands mid-blob.
    const noise = seededBytes('pull.test.ts', 4 << 20); // incompressible
    big = await makeImage({ layers: [[{ path: 'noise.bin', content: noise }]], compression: 'none' });
    await pushImage(reg.url, 'fault/img', 'v1', img);
    await pushImage(reg.url, 'fault/big', 'v1', big);
  });
  after(async () => {
    await proxy.stop();
    await reg.stop();
  });

  const bigLayer = (): Digest => big.layers[0]!.digest;

  test('--max-concurrent-downloads bounds the blob downloads in flight; a bad value is refused', () =>
    withRoot(async (root) => {
      // Each blob answer waits, so downloads that may overlap do.
      const slow = (): void => proxy.addFault({ kind: 'delay', ms: 150, method: 'GET', path: /\/blobs\//, times: 100 });
      const peakOf = async (args: string[], dir: string): Promise<number> => {
        proxy.clearFaults();
        slow();
        const res = await runBerth(join(root, dir), ['image', 'pull', '--no-unpack', ...args, `${proxy.host}/fault/img:v1`]);
        assert.equal(res.code, 0, res.stderr);
        const peak = proxy.peakBlobGets();
        proxy.clearFaults();
        return peak;
      };
      assert.equal(img.layers.length + 1, 4, 'fixture: a config and 3 layers');
      assert.equal(await peakOf([], 'default'), 3, 'the default is 3 at once');
      assert.equal(await peakOf(['--max-concurrent-downloads', '1'], 'one'), 1);
      assert.equal(await peakOf(['--max-concurrent-downloads', '2'], 'two'), 2);
      const bad = await runBerth(root, ['image', 'pull', '--max-concurrent-downloads', '0', `${proxy.host}/fault/img:v1`]);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /--max-concurrent-downloads "0" is not a whole number from 1 to 64/);
    }));

  test('corrupted blob: DIGEST_MISMATCH naming expected and found; nothing committed', () =>
    withRoot(async (root) => {
      proxy.clearFaults();
      proxy.addFault({ kind: 'corrupt', path: new RegExp(`/blobs/${bigLayer()}$`), times: 10 });
      const res = await runBerth(root, ['image', 'pull', `${proxy.host}/fault/big:v1`]);
      proxy.clearFaults();
      assert.equal(res.code, 1);
      assert.match(res.stderr, /digest/i);
      assert.ok(res.stderr.includes(bigLayer()), 'expected digest named');
      assert.match(res.stderr, /found sha256:[a-f0-9]{64}/);
      assert.ok(!(await blobsOnDisk(root)).includes(bigLayer()), 'corrupt blob committed');
      const { sys } = await openTestSystem(root);
      try {
        assert.equal(await sys.metadata.images.get(`${proxy.host}/fault/big:v1`), undefined);
      } finally {
        await sys.close();
      }
    }));

  test('a pull that fails after downloading keeps one settled lease per name; the next success drops it', () =>
    withRoot(async (root) => {
      const { sys } = await openTestSystem(root);
      try {
        const ref = `${proxy.host}/fault/big:v1`;
        proxy.clearFaults();
        proxy.addFault({ kind: 'corrupt', path: new RegExp(`/blobs/${bigLayer()}$`), times: 2 });
        for (let attempt = 1; attempt <= 2; attempt++) {
          await assert.rejects((await sys.puller()).pull(ref), (err: unknown) => isBerthError(err, 'DIGEST_MISMATCH'));
          const leases = await sys.metadata.leases.list();
          assert.equal(leases.length, 1, `after attempt ${attempt}: ${JSON.stringify(leases)}`);
          assert.ok(leases[0]!.settledAt, 'settled: no longer a pull in progress');
          assert.ok(leases[0]!.resources.some((r) => r.id === big.config.digest), 'it still names what was fetched');
        }
        proxy.clearFaults();
        await (await sys.puller()).pull(ref);
        assert.deepEqual(await sys.metadata.leases.list(), []);
      } finally {
        await sys.close();
      }
    }));

  test('connection cut mid-blob: resumed with a Range request, blob verified', () =>
    withRoot(async (root) => {
      proxy.clearFaults();
      proxy.addFault({ kind: 'cut', path: new RegExp(`/blobs/${bigLayer()}$`), afterBytes: 1 << 20, times: 2 });
      const before = proxy.requests.length;
      const res = await runBerth(root, ['image', 'pull', `${proxy.host}/fault/big:v1`]);
      proxy.clearFaults();
      assert.equal(res.code, 0, res.stderr);
      const ranged = proxy.requests.slice(before).filter((r) => r.path.endsWith(`/blobs/${bigLayer()}`) && r.headers.range);
      assert.ok(ranged.length >= 1, 'no Range request after the cut');
      assert.match(String(ranged[0]!.headers.range), /^bytes=[1-9]\d*-$/);
      assert.equal((await runBerth(root, ['content', 'verify'])).code, 0);
    }));

  test('server ignores Range after a cut: restarts from zero and still verifies', () =>
    withRoot(async (root) => {
      proxy.clearFaults();
      proxy.addFault({ kind: 'cut', path: new RegExp(`/blobs/${bigLayer()}$`), afterBytes: 1 << 20, times: 1 });
      proxy.addFault({ kind: 'ignoreRange', path: new RegExp(`/blobs/${bigLayer()}$`), times: 1 });
      const res = await runBerth(root, ['image', 'pull', `${proxy.host}/fault/big:v1`]);
      proxy.clearFaults();
      assert.equal(res.code, 0, res.stderr);
      assert.equal((await runBerth(root, ['content', 'verify'])).code, 0);
    }));

  test('429 and 503 with Retry-After are retried and the pull succeeds', () =>
    withRoot(async (root) => {
      proxy.clearFaults();
      proxy.addFault({ kind: 'status', status: 429, retryAfter: 1, path: /\/manifests\//, times: 1 });
      proxy.addFault({ kind: 'status', status: 503, retryAfter: 1, path: /\/blobs\//, times: 1 });
      const { sys, events } = await openTestSystem(root);
      const started = Date.now();
      try {
        const res = await (await sys.puller()).pull(`${proxy.host}/fault/img:v1`);
        assert.equal(res.record.target.digest, img.digest);
      } finally {
        await sys.close();
        proxy.clearFaults();
      }
      const retries = events.filter((e) => e.type === 'pull.retry');
      assert.ok(retries.length >= 2, `retries seen: ${retries.length}`);
      assert.ok(retries.every((e) => e.type === 'pull.retry' && e.delayMs >= 1000), 'Retry-After honoured');
      assert.ok(Date.now() - started >= 2000);
    }));

  test('503 that never clears: exit 1, UNAVAILABLE naming the host', () =>
    withRoot(async (root) => {
      proxy.clearFaults();
      proxy.addFault({ kind: 'status', status: 503, path: /\/manifests\//, times: 1000 });
      const res = await runBerth(root, ['image', 'pull', `${proxy.host}/fault/img:v1`]);
      proxy.clearFaults();
      assert.equal(res.code, 1);
      assert.match(res.stderr, /503|unavailable/i);
      assert.ok(res.stderr.includes(proxy.host));
    }));

  test('blob redirected to another host: followed, and Authorization is not sent there', async () => {
    const password = 'redirect-secret-pw';
    const authReg = await startRegistry({ auth: 'basic', username: 'carol', password });
    // Blob storage: an open registry with the same blobs, as behind a signed URL.
    const authProxy = await startFaultProxy(authReg.host, { redirectUpstream: reg.host });
    try {
      await pushImage(authReg.url, 'fault/redir', 'v1', img, { username: 'carol', password });
      await pushImage(reg.url, 'fault/redir', 'v1', img);
      await withRoot(async (root) => {
        await dockerLogin(root, authProxy.host, 'carol', password);
        authProxy.addFault({ kind: 'redirect', path: /\/blobs\/sha256:/, times: 100 });
        const res = await runBerth(root, ['image', 'pull', `${authProxy.host}/fault/redir:v1`]);
        assert.equal(res.code, 0, res.stderr);
        assert.ok(authProxy.otherRequests.length >= 1, 'redirect target never contacted');
        for (const r of authProxy.otherRequests) assert.equal(r.headers.authorization, undefined, `Authorization sent to ${authProxy.otherHost}${r.path}`);
      });
    } finally {
      await authProxy.stop();
      await authReg.stop();
    }
  });

  test('SIGKILL mid-pull, then a rerun completes, resuming what it had; content verify is clean', () =>
    withRoot(async (root) => {
      proxy.clearFaults();
      // Slow the big blob down (4 MiB at 1 MiB/s) so the kill lands mid-transfer.
      proxy.addFault({ kind: 'throttle', path: new RegExp(`/blobs/${bigLayer()}$`), bytesPerSecond: 1 << 20, times: 1 });
      const { child, done } = startBerth(root, ['image', 'pull', `${proxy.host}/fault/big:v1`]);
      const ingestDir = join(root, 'lib', 'content', 'ingest');
      const deadline = Date.now() + 20_000;
      let seen: number[] = [];
      // Kill once an ingest holds part of the blob.
      for (;;) {
        const sizes = await Promise.all(
          (await readdir(ingestDir).catch(() => [] as string[])).map((d) => stat(join(ingestDir, d, 'data')).then((s) => s.size, () => 0)),
        );
        seen = sizes;
        if (sizes.some((n) => n > 256 * 1024)) break;
        if (Date.now() > deadline) throw new Error('pull never wrote part of the blob');
        await new Promise((r) => setTimeout(r, 10));
      }
      child.kill('SIGKILL');
      const killed = await done;
      proxy.clearFaults();
      assert.equal(killed.signal, 'SIGKILL');
      // Its lease stays (it protects what was fetched) but names a holder that is gone: not a pull in progress.
      const t = await openTestSystem(root);
      try {
        const leases = await t.sys.metadata.leases.list();
        assert.deepEqual(leases.map((l) => [l.holder?.pid, l.settledAt]), [[child.pid, undefined]]);
        assert.equal(t.sys.holderRunning(leases[0]!.holder!), false);
      } finally {
        await t.sys.close();
      }
      const before = proxy.requests.length;
      const res = await runBerth(root, ['image', 'pull', `${proxy.host}/fault/big:v1`]);
      assert.equal(res.code, 0, res.stderr);
      const resumed = proxy.requests.slice(before).filter((r) => r.path.endsWith(`/blobs/${bigLayer()}`) && r.method === 'GET');
      // A pull that wrote nothing until its 4 MiB buffer was full left the whole blob (or nothing) behind: no Range to resume with.
      const rerun = proxy.requests.slice(before).map((r) => `${r.method} ${r.path} ${r.headers.range ?? ''}`);
      assert.equal(resumed.length, 1, `ingest sizes at the kill: ${seen.join(', ')}; the rerun asked for: ${rerun.join(', ')}; it said: ${res.stderr}`);
      assert.match(String(resumed[0]!.headers.range), /^bytes=[1-9]\d*-$/, 'the rerun resumes with a Range request');
      const verify = await runBerth(root, ['content', 'verify']);
      assert.equal(verify.code, 0, verify.stdout + verify.stderr);
      assert.match(verify.stdout, / 0 corrupt/);
      assert.deepEqual(await blobsOnDisk(root), blobDigests(big).sort());
    }));
});
