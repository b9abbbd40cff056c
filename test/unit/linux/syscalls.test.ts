/**
 * linux/: each call against the real kernel (tests run as root), and its
 * errors as BerthErrors naming the call, the errno and the path.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, lstatSync, mkdirSync, openSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { BerthError, isBerthError } from '../../../src/errors.js';
import { errnoOf, futimens, lgetxattr, llistxattr, lsetxattr, lutimens, mknod, syncfs } from '../../../src/linux/index.js';
import { tempDir } from '../../helpers/tmp.js';

let tmp: { path: string; cleanup(): Promise<void> };
before(async () => {
  tmp = await tempDir('berth-linux');
});
after(() => tmp.cleanup());
const p = (name: string): string => join(tmp.path, name);

function failsWith(fn: () => unknown, code: string, errno: string, path: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isBerthError(err), String(err));
    assert.equal(err.code, code);
    assert.equal(err.details.errno, errno);
    assert.equal(err.details.path, path);
    assert.ok(err.message.includes(errno) && err.message.includes(path), err.message);
    return true;
  });
}

describe('mknod', () => {
  it('creates character and block devices with their numbers, and FIFOs', () => {
    mknod(p('null'), 'char', 0o666, 1, 3);
    mknod(p('sda'), 'block', 0o640, 8, 1);
    mknod(p('wide'), 'char', 0o600, 4095, 1048575);
    mknod(p('fifo'), 'fifo', 0o620);
    const nul = lstatSync(p('null'));
    assert.ok(nul.isCharacterDevice());
    assert.equal(nul.rdev, 0x103);
    const sda = lstatSync(p('sda'));
    assert.ok(sda.isBlockDevice());
    assert.equal(sda.rdev, 0x801);
    // major 4095 and minor 2^20-1 in Linux's split dev_t layout.
    assert.equal(lstatSync(p('wide')).rdev, 0xffff_ffff);
    assert.ok(lstatSync(p('fifo')).isFIFO());
    // The umask (022 here or stricter) may clear bits; what is left is the mode asked for.
    assert.equal(lstatSync(p('null')).mode & 0o7777 & ~0o666, 0);
  });

  it('fails with ALREADY_EXISTS on an existing path, also a dangling symlink, which it does not follow', () => {
    symlinkSync(p('nowhere'), p('dangling'));
    failsWith(() => mknod(p('dangling'), 'fifo', 0o600), 'ALREADY_EXISTS', 'EEXIST', p('dangling'));
    assert.ok(!existsSync(p('nowhere')));
    failsWith(() => mknod(p('no/such/dir'), 'fifo', 0o600), 'NOT_FOUND', 'ENOENT', p('no/such/dir'));
  });
});

describe('extended attributes', () => {
  it('sets, reads and lists values byte for byte', () => {
    writeFileSync(p('f'), 'x');
    const bin = Buffer.from([0x00, 0x80, 0xff, 0xc3, 0x28, 0x00]);
    lsetxattr(p('f'), 'user.bin', bin);
    lsetxattr(p('f'), 'user.empty', Buffer.alloc(0));
    lsetxattr(p('f'), 'trusted.big', Buffer.alloc(3000, 0xab));
    assert.ok(lgetxattr(p('f'), 'user.bin')?.equals(bin));
    assert.equal(lgetxattr(p('f'), 'user.empty')?.length, 0);
    assert.ok(lgetxattr(p('f'), 'trusted.big')?.equals(Buffer.alloc(3000, 0xab)));
    assert.deepEqual(llistxattr(p('f')).sort(), ['trusted.big', 'user.bin', 'user.empty']);
    lsetxattr(p('f'), 'user.bin', Buffer.from('replaced'));
    assert.equal(lgetxattr(p('f'), 'user.bin')?.toString(), 'replaced');
  });

  it('returns undefined for a missing attribute and [] for a file without any', () => {
    writeFileSync(p('plain'), 'x');
    assert.equal(lgetxattr(p('plain'), 'user.none'), undefined);
    assert.deepEqual(llistxattr(p('plain')), []);
  });

  it('acts on a symlink itself, not its target', () => {
    writeFileSync(p('target'), 'x');
    symlinkSync(p('target'), p('link'));
    lsetxattr(p('link'), 'trusted.on-link', Buffer.from('1'));
    assert.deepEqual(llistxattr(p('link')), ['trusted.on-link']);
    assert.deepEqual(llistxattr(p('target')), []);
    assert.equal(lgetxattr(p('target'), 'trusted.on-link'), undefined);
    assert.equal(readlinkSync(p('link')), p('target'));
  });

  it('translates errors, naming the attribute', () => {
    failsWith(() => lgetxattr(p('missing'), 'user.x'), 'NOT_FOUND', 'ENOENT', p('missing'));
    failsWith(() => llistxattr(p('missing')), 'NOT_FOUND', 'ENOENT', p('missing'));
    writeFileSync(p('g'), 'x');
    failsWith(() => lsetxattr(p('g'), 'bogus.namespace', Buffer.from('v')), 'UNSUPPORTED', 'EOPNOTSUPP', p('g'));
    assert.throws(() => lsetxattr(p('missing'), 'user.y', Buffer.from('v')), (err: unknown) => err instanceof BerthError && err.message.includes('user.y'));
  });
});

describe('times', () => {
  it('sets times to the nanosecond, on an open file and on a path', () => {
    writeFileSync(p('t'), 'x');
    const fd = openSync(p('t'), 'r+');
    try {
      futimens(fd, 1800000000000000001n, 1700000000123456789n);
    } finally {
      closeSync(fd);
    }
    const st = lstatSync(p('t'), { bigint: true });
    assert.deepEqual([st.atimeNs, st.mtimeNs], [1800000000000000001n, 1700000000123456789n]);
    lutimens(p('t'), 5n, 999999999n);
    const st2 = lstatSync(p('t'), { bigint: true });
    assert.deepEqual([st2.atimeNs, st2.mtimeNs], [5n, 999999999n]);
  });

  it('sets a symlink\'s own times, not its target\'s', () => {
    writeFileSync(p('tt'), 'x');
    symlinkSync(p('tt'), p('tl'));
    const before = lstatSync(p('tt'), { bigint: true }).mtimeNs;
    lutimens(p('tl'), 1n, 2000000000n);
    assert.equal(lstatSync(p('tl'), { bigint: true }).mtimeNs, 2000000000n);
    assert.equal(lstatSync(p('tt'), { bigint: true }).mtimeNs, before);
  });

  it('translates errors', () => {
    failsWith(() => lutimens(p('none'), 0n, 0n), 'NOT_FOUND', 'ENOENT', p('none'));
    assert.throws(() => futimens(987654, 0n, 0n), (err: unknown) => isBerthError(err) && err.details.errno === 'EBADF');
  });
});

describe('syncfs', () => {
  it('syncs the filesystem of a directory or a file', async () => {
    mkdirSync(p('s'));
    writeFileSync(p('s/f'), 'data');
    await syncfs(p('s'));
    await syncfs(p('s/f'));
  });

  it('fails with NOT_FOUND for a missing path', async () => {
    await assert.rejects(syncfs(p('gone')), (err: unknown) => isBerthError(err, 'NOT_FOUND') && err.details.errno === 'ENOENT' && err.message.includes(p('gone')));
  });
});

describe('errnoOf', () => {
  it('reads errno names from linux/ errors and node:fs errors alike', () => {
    assert.equal(errnoOf(new BerthError('NOT_FOUND', 'x', { details: { errno: 'ENOENT' } })), 'ENOENT');
    try {
      lstatSync(p('absent'));
    } catch (err) {
      assert.equal(errnoOf(err), 'ENOENT');
    }
    assert.equal(errnoOf(new Error('plain')), undefined);
    assert.equal(errnoOf(undefined), undefined);
  });
});

describe('loading', () => {
  it('loads koffi on the first call, not on import', () => {
    const mod = fileURLToPath(new URL('../../../src/linux/index.js', import.meta.url));
    const script = `
      import { createRequire } from 'node:module';
      const cache = createRequire(import.meta.url).cache;
      const loaded = () => Object.keys(cache).some((k) => k.includes('/koffi/'));
      const m = await import(${JSON.stringify(mod)});
      const before = loaded();
      m.llistxattr('/');
      console.log(JSON.stringify([before, loaded()]));`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.deepEqual(JSON.parse(out), [false, true]);
  });
});
