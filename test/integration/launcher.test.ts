/**
 * berth's first line (src/main.ts): run as a program, it moves
 * NODE_EXTRA_CA_CERTS aside so node does not parse that file at start-up,
 * and berth still trusts those certificates when it pulls over TLS.
 */
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { copyFile, readdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { busyboxImage } from '../fixtures/images.js';
import { berthCommand, berthMain, runBerth } from '../helpers/berth.js';
import { withTempDir } from '../helpers/tmp.js';
import { repoHandler } from '../unit/remotes/fake.js';

const execFileP = promisify(execFile);

test('the launcher keeps node from loading NODE_EXTRA_CA_CERTS at start-up', () => {
  const env = { ...process.env, NODE_EXTRA_CA_CERTS: '/nonexistent/extra-ca.pem' };
  // The premise: node itself reads the file before any of berth's code runs.
  const direct = spawnSync(process.execPath, [berthMain, '--help'], { env, encoding: 'utf8' });
  assert.match(direct.stderr, /extra certs/i, 'node warns about the unreadable file when started directly');
  const launched = spawnSync(berthCommand, ['--help'], { env, encoding: 'utf8' });
  assert.equal(launched.status, 0, launched.stderr);
  assert.equal(launched.stderr, '', 'no warning: node never saw the variable');
  assert.match(launched.stdout, /declarative container engine/);
});

test('a pull over TLS trusts the certificates NODE_EXTRA_CA_CERTS names', async () => {
  await withTempDir('berth-launcher', async (dir) => {
    const cert = join(dir, 'server.pem');
    const key = join(dir, 'server.key');
    await execFileP('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=registry', '-addext', 'subjectAltName=IP:127.0.0.1',
    ]);
    const img = await busyboxImage();
    const blobs = new Map([img.config, ...img.layers].map((b) => [b.digest, b.data]));
    const handler = repoHandler({ manifests: new Map([['1', { body: img.manifest, mediaType: img.mediaType }]]), blobs });
    const server = createServer({ cert: await readFile(cert), key: await readFile(key) }, (req, res) => void handler(req, res, new URL(req.url ?? '/', 'https://x')));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
      // Loopback hosts default to plain HTTP; this only asks for https, with no CA of its own.
      const registries = join(dir, 'registries.yaml');
      await writeFile(registries, `configs:\n  "${host}":\n    tls: { insecure_skip_verify: false }\n`);
      const pull = ['--registry-config', registries, 'image', 'pull', '--no-unpack', `${host}/team/app:1`];
      const untrusted = await runBerth(dir, pull, { NODE_EXTRA_CA_CERTS: '' });
      assert.equal(untrusted.code, 1);
      assert.match(untrusted.stderr, /TLS|certificate/i, untrusted.stderr);
      const trusted = await runBerth(dir, pull, { NODE_EXTRA_CA_CERTS: cert });
      assert.equal(trusted.code, 0, trusted.stderr);
      const ls = await runBerth(dir, ['-o', 'json', 'image', 'ls']);
      assert.ok(ls.stdout.includes(img.digest), ls.stdout);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});

test('the command runs the bundle with a code cache per command, made again when V8 rejects it', async () => {
  await withTempDir('berth-bin', async (dir) => {
    // A copy of the command and its bundle, so this test has its own cache directory.
    for (const f of ['bin.cjs', 'bundle.cjs', 'remote.cjs']) await copyFile(join(dirname(berthCommand), f), join(dir, f));
    const bin = join(dir, 'bin.cjs');
    const cache = join(dir, '.code-cache', 'none.v8');
    const run = (): string => {
      const r = spawnSync(process.execPath, [bin, '--help'], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      return r.stdout;
    };
    const help = run();
    assert.match(help, /declarative container engine/);
    const made = await readFile(cache);
    assert.ok(made.length > 10_000, `a code cache of ${made.length} bytes`);
    assert.equal((await stat(join(dir, '.code-cache'))).mode & 0o777, 0o700);
    assert.equal(run(), help);
    assert.ok((await readFile(cache)).equals(made), 'an accepted cache is left as it is');
    await writeFile(cache, 'not a code cache');
    assert.equal(run(), help, 'a damaged cache only means compiling');
    assert.ok((await readFile(cache)).length > 10_000, 'and it is made again');
  });
});

test('the bundles are ASCII, so V8 keeps their source one byte per character', async () => {
  for (const f of ['bundle.cjs', 'remote.cjs']) {
    const bytes = await readFile(join(dirname(berthCommand), f));
    const at = bytes.findIndex((b) => b > 0x7f);
    assert.equal(at, -1, `${f} has a non-ASCII byte at offset ${at}`);
  }
});

test('without a bundle (only tsc ran) the command runs dist/src unbundled', async () => {
  await withTempDir('berth-bin', async (dir) => {
    // dist/src without bundle.cjs and remote.cjs: its modules linked, the command copied.
    const src = dirname(berthCommand);
    for (const f of await readdir(src)) if (!['bin.cjs', 'bundle.cjs', 'remote.cjs', '.code-cache'].includes(f)) await symlink(join(src, f), join(dir, f));
    await copyFile(berthCommand, join(dir, 'bin.cjs'));
    const r = spawnSync(process.execPath, [join(dir, 'bin.cjs'), '--help'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /declarative container engine/);
    assert.equal(await stat(join(dir, '.code-cache')).catch(() => undefined), undefined, 'no bundle, no code cache');
    const bad = spawnSync(process.execPath, [join(dir, 'bin.cjs'), 'frobnicate'], { encoding: 'utf8' });
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /unknown command "frobnicate"/);
  });
});
