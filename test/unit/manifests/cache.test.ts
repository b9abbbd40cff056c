import assert from 'node:assert/strict';
import { readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { cacheKey, jsonExact, type CachedItem, type ParseCache } from '../../../src/manifests/cache.js';
import { DirectoryParseCache, loadManifests } from '../../../src/manifests/index.js';
import { withTempDir } from '../../helpers/tmp.js';
import { container, writeTree } from './fixtures.js';

/** A DirectoryParseCache that counts its hits and stores. */
class Counting implements ParseCache {
  hits = 0;
  puts = 0;
  constructor(readonly inner: ParseCache) {}
  async get(text: string): Promise<CachedItem[] | undefined> {
    const r = await this.inner.get(text);
    if (r) this.hits++;
    return r;
  }
  async put(text: string, items: CachedItem[]): Promise<void> {
    this.puts++;
    await this.inner.put(text, items);
  }
}

describe('the manifest parse cache', () => {
  it('serves an unchanged file from the cache and parses an edited one again', async () => {
    await withTempDir('berth-cache', async (top) => {
      const dir = join(top, 'm');
      await writeTree(dir, { 'a.yaml': `${container('a')}---\n${container('b')}`, 'c.yaml': container('c') });
      const cache = new Counting(new DirectoryParseCache(join(top, 'cache')));
      const first = await loadManifests([dir], { cache });
      assert.deepEqual([cache.hits, cache.puts], [0, 2]);
      const second = await loadManifests([dir], { cache });
      assert.deepEqual([cache.hits, cache.puts], [2, 2], 'both files from the cache');
      assert.deepEqual(second, first);
      assert.deepEqual(second.objects.map((o) => `${o.name} ${o.source.line}:${o.source.col}`), ['a 1:1', 'b 8:1', 'c 1:1']);

      await writeFile(join(dir, 'c.yaml'), container('c', 'image: other'));
      const third = await loadManifests([dir], { cache });
      assert.deepEqual([cache.hits, cache.puts], [3, 3], 'the edited file is parsed and stored');
      assert.equal(third.objects.find((o) => o.name === 'c')?.kind, 'Container');
      assert.match(JSON.stringify(third.objects.find((o) => o.name === 'c')), /other/);
    });
  });

  it('parses everything again when an error across files needs positions a cached file lacks', async () => {
    await withTempDir('berth-cache', async (top) => {
      const dir = join(top, 'm');
      await writeTree(dir, { 'a.yaml': container('web'), 'b.yaml': container('db', 'image: busybox\ndependsOn: [web]') });
      const cache = new Counting(new DirectoryParseCache(join(top, 'cache')));
      assert.deepEqual((await loadManifests([dir], { cache })).errors, []);
      // Now b names a container that is not there: the error points into b's text, which the cache does not hold.
      await writeFile(join(dir, 'a.yaml'), container('api'));
      const r = await loadManifests([dir], { cache });
      assert.deepEqual(r.errors.map((e) => `${e.code} ${e.line}:${e.col} ${e.pointer}`), ['DEPENDENCY 7:15 /spec/dependsOn/0']);
      assert.deepEqual(r, await loadManifests([dir]), 'the same as without a cache');
    });
  });

  it('keeps no file with errors, and no value JSON would change', async () => {
    await withTempDir('berth-cache', async (top) => {
      const dir = join(top, 'm');
      const cacheDir = join(top, 'cache');
      await writeTree(dir, { 'bad.yaml': container('web', 'image: a\nenvv: {}'), 'inf.yaml': container('x', 'image: a\nlabels: { n: .inf }') });
      const cache = new DirectoryParseCache(cacheDir);
      await loadManifests([dir], { cache });
      assert.deepEqual(await readdir(cacheDir).catch(() => []), []);
      assert.equal(jsonExact({ a: [1, 'x', null, true, { b: 2.5 }] }), true);
      for (const v of [Infinity, NaN, -0, { a: -Infinity }, [undefined], new Date(0)]) assert.equal(jsonExact(v), false, String(v));
    });
  });

  it('treats a damaged entry as a miss; entries are owner-only and bounded in number', async () => {
    await withTempDir('berth-cache', async (top) => {
      const cacheDir = join(top, 'cache');
      const cache = new DirectoryParseCache(cacheDir, 3);
      const text = container('a');
      await cache.put(text, [{ value: { a: 1 }, base: '', line: 1, col: 1 }]);
      assert.deepEqual(await cache.get(text), [{ value: { a: 1 }, base: '', line: 1, col: 1 }]);
      assert.equal((await stat(cacheDir)).mode & 0o777, 0o700);
      const entry = join(cacheDir, `${cacheKey(text)}.json`);
      assert.equal((await stat(entry)).mode & 0o777, 0o600);
      for (const damaged of ['{"trunc', '[{"value": 1}]', '{}']) {
        await writeFile(entry, damaged);
        assert.equal(await cache.get(text), undefined, damaged);
      }
      // Past 3 entries the oldest go.
      for (let i = 0; i < 5; i++) {
        await cache.put(`t${i}`, [{ value: i, base: '', line: 1, col: 1 }]);
        await utimes(join(cacheDir, `${cacheKey(`t${i}`)}.json`), 1000 + i, 1000 + i);
      }
      const left = (await readdir(cacheDir)).sort();
      assert.equal(left.length, 3);
      assert.deepEqual(await cache.get('t4'), [{ value: 4, base: '', line: 1, col: 1 }]);
      assert.equal(await cache.get('t0'), undefined);
      assert.match(await readFile(join(cacheDir, `${cacheKey('t4')}.json`), 'utf8'), /"value":4/);
    });
  });

  it('keys by the text and the parser release', () => {
    assert.notEqual(cacheKey('a: 1\n'), cacheKey('a: 2\n'));
    assert.equal(cacheKey('a: 1\n'), cacheKey('a: 1\n'));
    assert.match(cacheKey(''), /^[0-9a-f]{64}$/);
  });
});
