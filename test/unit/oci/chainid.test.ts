import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { chainIds } from '../../../src/oci/chainid.js';
import type { Digest } from '../../../src/oci/digest.js';

const digestOf = (s: string): Digest => `sha256:${createHash('sha256').update(s).digest('hex')}` as Digest;

describe('chainIds', () => {
  const [d0, d1, d2] = [digestOf('layer 0'), digestOf('layer 1'), digestOf('layer 2')];

  it('the chain ID of a single layer is its diffID', () => {
    assert.deepEqual(chainIds([d0]), [d0]);
  });

  it('no layers, no chain IDs', () => {
    assert.deepEqual(chainIds([]), []);
  });

  it('follows the OCI definition for three layers', () => {
    // ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)), computed here independently.
    const c1 = digestOf(`${d0} ${d1}`);
    const c2 = digestOf(`${c1} ${d2}`);
    assert.deepEqual(chainIds([d0, d1, d2]), [d0, c1, c2]);
  });

  it('matches a known value', () => {
    // Computed outside berth: printf 'sha256:<64 a> sha256:<64 b>' | sha256sum
    const a = `sha256:${'a'.repeat(64)}` as Digest;
    const b = `sha256:${'b'.repeat(64)}` as Digest;
    assert.deepEqual(chainIds([a, b]), [a, 'sha256:ccd722928bd92476ba1745586fed6e45a102504185ad88cd89e01ff116fd146c']);
  });

  it('depends on order', () => {
    assert.notEqual(chainIds([d0, d1])[1], chainIds([d1, d0])[1]);
  });
});
