import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError } from '../../../src/errors.js';
import { createLogger, type LogRecord } from '../../../src/log.js';
import { DockerConfigCredentials, normalizeCredentialHost, parseDockerConfig } from '../../../src/remotes/index.js';
import { tempDir } from '../../helpers/tmp.js';
import { rejects } from './fake.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');

test('credential keys fold scheme, path and the Docker Hub aliases', () => {
  assert.equal(normalizeCredentialHost('https://index.docker.io/v1/'), 'docker.io');
  assert.equal(normalizeCredentialHost('registry-1.docker.io'), 'docker.io');
  assert.equal(normalizeCredentialHost('https://Registry.Example:5000'), 'registry.example:5000');
  assert.equal(normalizeCredentialHost('127.0.0.1:5000'), '127.0.0.1:5000');
});

test('DockerConfigCredentials reads auths by host, https://host and the Docker Hub v1 key', async () => {
  const dir = await tempDir('berth-dockercfg');
  const logs: LogRecord[] = [];
  try {
    await writeFile(
      join(dir.path, 'config.json'),
      JSON.stringify({
        auths: {
          'https://index.docker.io/v1/': { auth: b64('hubuser:hub:pass') },
          'https://registry.example:5000': { username: 'ex', password: 'expass' },
          '127.0.0.1:5000': { auth: b64('local:pw') },
          'token.example': { auth: b64('<token>:'), identitytoken: 'refresh-xyz' },
          'empty.example': {},
        },
        credsStore: 'desktop',
        credHelpers: { 'gcr.io': 'gcloud' },
      }),
    );
    const store = new DockerConfigCredentials(dir.path, { logger: createLogger((r) => logs.push(r), 'debug') });
    assert.deepEqual(await store.get('registry-1.docker.io'), { username: 'hubuser', password: 'hub:pass' });
    assert.deepEqual(await store.get('docker.io'), { username: 'hubuser', password: 'hub:pass' });
    assert.deepEqual(await store.get('registry.example:5000'), { username: 'ex', password: 'expass' });
    assert.deepEqual(await store.get('127.0.0.1:5000'), { username: 'local', password: 'pw' });
    assert.equal(await store.get('token.example'), undefined);
    assert.equal(await store.get('empty.example'), undefined);
    assert.equal(await store.get('other.example'), undefined);
    assert.ok(logs.some((l) => l.level === 'debug' && /helpers/.test(l.msg)), 'credential helpers are mentioned at debug');
    assert.ok(logs.some((l) => l.level === 'debug' && /identity token/.test(l.msg) && l.fields.host === 'token.example'));
    assert.ok(!JSON.stringify(logs).includes('refresh-xyz'));
  } finally {
    await dir.cleanup();
  }
});

test('a missing config.json means no credentials', async () => {
  const dir = await tempDir('berth-dockercfg');
  try {
    assert.equal(await new DockerConfigCredentials(dir.path).get('docker.io'), undefined);
  } finally {
    await dir.cleanup();
  }
});

test('a broken config.json is INVALID_ARGUMENT naming the file, without quoting it', async () => {
  const dir = await tempDir('berth-dockercfg');
  try {
    const file = join(dir.path, 'config.json');
    await writeFile(file, '{"auths": {"h": {"password": "Very-Secret-Pw" ,,}}}');
    const err = await rejects(new DockerConfigCredentials(dir.path).get('h'));
    assert.ok(err instanceof BerthError && err.code === 'INVALID_ARGUMENT', String(err));
    assert.ok(err.message.includes(file));
    assert.ok(!JSON.stringify(err.toJSON()).includes('Very-Secret-Pw'));
  } finally {
    await dir.cleanup();
  }
  for (const [text, re] of [
    ['[]', /not a JSON object/],
    ['{"auths": 3}', /"auths" is not an object/],
    ['{"auths": {"h": 3}}', /auths\["h"\] is not an object/],
    [`{"auths": {"h": {"auth": "${b64('nocolon')}"}}}`, /not base64 of "user:password"/],
  ] as const) {
    const err = (() => {
      try {
        parseDockerConfig(text, '/cfg/config.json');
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    assert.ok(err instanceof BerthError && err.code === 'INVALID_ARGUMENT' && re.test(err.message), `${text}: ${String(err)}`);
  }
});
