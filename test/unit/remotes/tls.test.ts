import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BerthError } from '../../../src/errors.js';
import { parseReference } from '../../../src/oci/reference.js';
import { loadRegistryHosts, parseRegistryHosts } from '../../../src/remotes/index.js';
import { tempDir } from '../../helpers/tmp.js';
import { makeResolver, manifestBytes, OCI_MANIFEST, rejects, repoHandler, sha256, startServer } from './fake.js';

const execFileP = promisify(execFile);

/** A self-signed certificate (it is its own CA) for 127.0.0.1, made with openssl. */
async function selfSigned(dir: string, name: string): Promise<{ cert: string; key: string }> {
  const cert = join(dir, `${name}.pem`);
  const key = join(dir, `${name}.key`);
  await execFileP('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${name}`, '-addext', 'subjectAltName=IP:127.0.0.1',
  ]);
  return { cert, key };
}

test('TLS: private CA via ca_file, insecure_skip_verify, client certificates, and TLS failures', async (t) => {
  const dir = await tempDir('berth-tls');
  const server = await selfSigned(dir.path, 'server');
  const client = await selfSigned(dir.path, 'client');
  const blob = randomBytes(3 << 20);
  const repo = { manifests: new Map([['1', { body: manifestBytes(), mediaType: OCI_MANIFEST }]]), blobs: new Map([[sha256(blob), blob]]) };
  const handler = repoHandler(repo);
  const httpsServer: Server = createServer(
    { cert: await readFile(server.cert), key: await readFile(server.key), ca: await readFile(client.cert), requestCert: true, rejectUnauthorized: false },
    (req, res) => void handler(req, res, new URL(req.url ?? '/', 'https://x')),
  );
  await new Promise<void>((resolve) => httpsServer.listen(0, '127.0.0.1', resolve));
  const host = `127.0.0.1:${(httpsServer.address() as AddressInfo).port}`;
  const plain = await startServer(handler);
  t.after(async () => {
    httpsServer.closeAllConnections();
    await new Promise((r) => httpsServer.close(r));
    await plain.close();
    await dir.cleanup();
  });
  const ref = parseReference(`${host}/team/app:1`);
  const file = join(dir.path, 'registries.yaml');

  // Without the CA: a certificate failure, not retried, with a hint about CA config.
  await writeFile(file, `configs:\n  "${host}":\n    tls: { insecure_skip_verify: false }\n`);
  let h = makeResolver({ hosts: await parseRegistryHosts(await readFile(file, 'utf8'), file) });
  const err = await rejects(h.resolver.resolve(ref));
  await h.resolver.close();
  assert.ok(err instanceof BerthError && err.code === 'UNAVAILABLE', String(err));
  assert.ok(err.message.includes(host) && /TLS/.test(err.message), err.message);
  assert.match(err.hint ?? '', /ca_file/);
  assert.deepEqual(h.sleeps, []);

  // With the CA.
  await writeFile(file, `configs:\n  "${host}":\n    tls: { ca_file: server.pem }\n`);
  h = makeResolver({ hosts: await parseRegistryHosts(await readFile(file, 'utf8'), file) });
  assert.equal((await h.resolver.resolve(ref)).host, host);
  // A blob body over TLS, read into the caller's buffers.
  const body = await h.resolver.fetcher(ref).fetchBlob({ mediaType: 'application/octet-stream', digest: sha256(blob), size: blob.length });
  const got: Buffer[] = [];
  for (let buf = Buffer.alloc(1 << 20), n = await body.readInto(buf); n > 0; buf = Buffer.alloc(1 << 20), n = await body.readInto(buf)) got.push(buf.subarray(0, n));
  assert.ok(Buffer.concat(got).equals(blob), 'blob over TLS');
  await h.resolver.close();

  // NODE_EXTRA_CA_CERTS, as the launcher passes it on (BERTH_EXTRA_CA_CERTS): trusted next to the system roots, over two connections sharing
  // one TLS context. (The config only says "https": loopback hosts default to plain HTTP.)
  await writeFile(file, `configs:\n  "${host}":\n    tls: { insecure_skip_verify: false }\n`);
  h = makeResolver({ hosts: await loadRegistryHosts(file, { extraCAFile: server.cert }) });
  await Promise.all([h.resolver.resolve(ref), h.resolver.resolve(ref)]);
  await h.resolver.close();
  // An extra-CA file that cannot be read adds nothing, as in node: the certificate is not trusted.
  h = makeResolver({ hosts: await loadRegistryHosts(file, { extraCAFile: join(dir.path, 'missing.pem') }) });
  assert.match(String(await rejects(h.resolver.resolve(ref))), /TLS/);
  await h.resolver.close();
  // A host's own ca_file replaces the extra certificates (here a CA that did not sign the server's certificate).
  await writeFile(file, `configs:\n  "${host}":\n    tls: { ca_file: client.pem }\n`);
  h = makeResolver({ hosts: await parseRegistryHosts(await readFile(file, 'utf8'), file, { extraCA: await readFile(server.cert) }) });
  assert.match(String(await rejects(h.resolver.resolve(ref))), /TLS/);
  await h.resolver.close();

  // Skipping verification.
  await writeFile(file, `configs:\n  "${host}":\n    tls: { insecure_skip_verify: true }\n`);
  h = makeResolver({ hosts: await parseRegistryHosts(await readFile(file, 'utf8'), file) });
  await h.resolver.resolve(ref);
  await h.resolver.close();

  // A client certificate is presented when configured.
  let sawClientCert = false;
  httpsServer.prependListener('request', (req) => {
    sawClientCert ||= (req.socket as TLSSocket).authorized;
  });
  await writeFile(file, `configs:\n  "${host}":\n    tls: { ca_file: server.pem, cert_file: client.pem, key_file: client.key }\n`);
  h = makeResolver({ hosts: await parseRegistryHosts(await readFile(file, 'utf8'), file) });
  await h.resolver.resolve(ref);
  await h.resolver.close();
  assert.ok(sawClientCert, 'the server did not see an authorized client certificate');

  // HTTPS against a plain-HTTP server.
  await writeFile(file, `configs:\n  "${plain.host}":\n    tls: { insecure_skip_verify: false }\n`);
  h = makeResolver({ hosts: await parseRegistryHosts(await readFile(file, 'utf8'), file) });
  const err2 = await rejects(h.resolver.resolve(parseReference(`${plain.host}/team/app:1`)));
  await h.resolver.close();
  assert.ok(err2 instanceof BerthError && err2.code === 'UNAVAILABLE', String(err2));
  assert.match(err2.hint ?? '', /http:\/\//);
});
