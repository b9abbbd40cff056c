/**
 * An OCI image (config + manifest) over benchmark layers, and pushing it to a
 * registry with the test uploader (blobs streamed from the layer cache).
 */
import { createHash } from 'node:crypto';
import { MediaType } from '../../../src/oci/mediatype.js';
import { pushBlobFile, pushManifest, pushBlob } from '../../helpers/push.js';
import { fixtureHostPlatform } from '../../fixtures/images.js';
import type { BenchLayer } from './layers.js';

export interface JsonBlob {
  mediaType: string;
  digest: string;
  size: number;
  body: Buffer;
}

export interface BenchImage {
  manifest: JsonBlob;
  config: JsonBlob;
  layers: BenchLayer[];
  /** Bytes a pull transfers: manifest + config + layer blobs. */
  pullBytes: number;
  /** Uncompressed layer tars. */
  tarBytes: number;
}

function jsonBlob(mediaType: string, doc: unknown): JsonBlob {
  const body = Buffer.from(JSON.stringify(doc));
  return { mediaType, body, size: body.length, digest: `sha256:${createHash('sha256').update(body).digest('hex')}` };
}

/** A single-platform OCI image for the host's platform (so every client picks it without --platform). */
export function benchImage(layers: BenchLayer[]): BenchImage {
  const platform = fixtureHostPlatform();
  const config = jsonBlob(MediaType.ociConfig, {
    architecture: platform.architecture,
    os: platform.os,
    created: '2024-01-01T00:00:00Z',
    config: { Cmd: ['/bin/sh'], Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffID) },
    history: layers.map((l) => ({ created: '2024-01-01T00:00:00Z', created_by: `berth bench layer ${l.index} (${l.kind})` })),
  });
  const manifest = jsonBlob(MediaType.ociManifest, {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: { mediaType: config.mediaType, digest: config.digest, size: config.size },
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
  });
  return {
    manifest,
    config,
    layers,
    pullBytes: manifest.size + config.size + layers.reduce((n, l) => n + l.size, 0),
    tarBytes: layers.reduce((n, l) => n + l.tarSize, 0),
  };
}

/** Pushes the layers (streamed from their files), the config, then the manifest as `repo:tag`. */
export async function pushBenchImage(registryUrl: string, repo: string, tag: string, image: BenchImage): Promise<void> {
  for (const l of image.layers) await pushBlobFile(registryUrl, repo, { digest: l.digest, path: l.path, size: l.size });
  await pushBlob(registryUrl, repo, { digest: image.config.digest, data: image.config.body });
  await pushManifest(registryUrl, repo, tag, image.manifest.mediaType, image.manifest.body);
}
