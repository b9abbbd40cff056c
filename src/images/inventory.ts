import type { ContentStore } from '../content/store.js';
import { BerthError, isBerthError } from '../errors.js';
import type { EventPublisher } from '../events.js';
import type { ImageRecord, MetadataStore } from '../metadata/store.js';
import {
  formatReference,
  isIndex,
  MAX_CONFIG_BYTES,
  MAX_MANIFEST_BYTES,
  parseImageConfig,
  parseIndex,
  parseManifest,
  parseReference,
  type Descriptor,
  type Digest,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
} from '../oci/index.js';
import { PlatformLabel } from './pull.js';

/**
 * The local view of images: list, inspect and remove names. Removing a name
 * never deletes content; blobs no image references are for the garbage
 * collector, which marks from images through the content reference labels.
 */

export interface ImageSummary {
  name: string;
  digest: Digest;
  mediaType: string;
  /** Bytes of every stored blob the image references (compressed layers). */
  size: number;
  platform: string | undefined;
  createdAt: string;
  updatedAt: string;
}

export interface ImageDetail {
  record: ImageRecord;
  index?: ImageIndex;
  manifestDescriptor?: Descriptor;
  manifest?: ImageManifest;
  config?: ImageConfig;
  size: number;
}

/** The documents kept in memory (ImageInventory.readDocument): up to this many, each at most DOCUMENT_CACHE_BLOB bytes. */
const DOCUMENT_CACHE_ENTRIES = 256;
const DOCUMENT_CACHE_BLOB = 64 * 1024;

export class ImageInventory {
  /** Index, manifest and config bytes by digest, oldest first. */
  private readonly documentCache = new Map<Digest, Buffer>();

  constructor(private readonly deps: { content: ContentStore; metadata: MetadataStore; events: EventPublisher }) {}

  async list(): Promise<ImageSummary[]> {
    const records = await this.deps.metadata.images.list();
    return Promise.all(records.map(async (r) => this.summary(r)));
  }

  async get(ref: string): Promise<ImageRecord> {
    const name = canonicalName(ref);
    const rec = await this.deps.metadata.images.get(name);
    if (!rec) throw new BerthError('NOT_FOUND', `image ${name} not found`, { hint: `pull it first: berth image pull ${ref}` });
    return rec;
  }

  async inspect(ref: string): Promise<ImageDetail> {
    const record = await this.get(ref);
    const [size, parts] = await Promise.all([this.size(record.target.digest), this.documents(record)]);
    return { record, size, ...parts };
  }

  /**
   * What a container is made from: the record and the stored index,
   * manifest and config (those stored), without inspect's size, which
   * stats every blob the image references.
   */
  async stored(ref: string): Promise<Omit<ImageDetail, 'size'>> {
    const record = await this.get(ref);
    return { record, ...(await this.documents(record)) };
  }

  private async documents(record: ImageRecord): Promise<Pick<ImageDetail, 'index' | 'manifestDescriptor' | 'manifest' | 'config'>> {
    const { content, metadata } = this.deps;
    const detail: Pick<ImageDetail, 'index' | 'manifestDescriptor' | 'manifest' | 'config'> = {};
    let manifestDesc: Descriptor | undefined = record.target;
    if (isIndex(record.target.mediaType)) {
      const bytes = (await this.readDocument(record.target.digest, MAX_MANIFEST_BYTES)) ?? (await content.readBytes(record.target.digest, MAX_MANIFEST_BYTES));
      detail.index = parseIndex(bytes, record.target.mediaType, `index ${record.target.digest}`);
      const [child] = await metadata.content.references(record.target.digest);
      manifestDesc = detail.index.manifests.find((m) => m.digest === child);
    }
    const manifestBytes = manifestDesc && (await this.readDocument(manifestDesc.digest, MAX_MANIFEST_BYTES));
    if (manifestDesc && manifestBytes) {
      detail.manifestDescriptor = manifestDesc;
      detail.manifest = parseManifest(manifestBytes, manifestDesc.mediaType, `manifest ${manifestDesc.digest}`);
      const configBytes = await this.readDocument(detail.manifest.config.digest, MAX_CONFIG_BYTES);
      if (configBytes) detail.config = parseImageConfig(configBytes, `config ${detail.manifest.config.digest}`);
    }
    return detail;
  }

  /**
   * A stored document's bytes, undefined when the store has no such blob.
   * A blob never changes under its digest (the store verified it when it was
   * written), so a long-running process, the daemon, reads each small one
   * from the store once: a container's image was two blobs read one after
   * the other, ten trips through libuv's thread pool, ~1 ms of every run.
   */
  private async readDocument(digest: Digest, max: number): Promise<Buffer | undefined> {
    const hit = this.documentCache.get(digest);
    if (hit && hit.length <= max) return hit;
    const bytes = await readStored(this.deps.content, digest, max);
    if (bytes && bytes.length <= DOCUMENT_CACHE_BLOB) {
      if (this.documentCache.size >= DOCUMENT_CACHE_ENTRIES) this.documentCache.delete(this.documentCache.keys().next().value!);
      this.documentCache.set(digest, bytes);
    }
    return bytes;
  }

  /** Removes the name. Content stays until garbage collection. */
  async remove(ref: string): Promise<ImageRecord> {
    const removed = await this.deps.metadata.images.delete(canonicalName(ref));
    this.deps.events.publish({ type: 'image.deleted', name: removed.name, digest: removed.target.digest });
    return removed;
  }

  private async summary(r: ImageRecord): Promise<ImageSummary> {
    return {
      name: r.name,
      digest: r.target.digest,
      mediaType: r.target.mediaType,
      size: await this.size(r.target.digest),
      platform: r.labels[PlatformLabel],
      createdAt: r.createdAt,
      updatedAt: r.updatedAt,
    };
  }

  /** Sums the stored blobs reachable from digest through reference labels. */
  private async size(root: Digest): Promise<number> {
    const seen = new Set<Digest>();
    const queue: Digest[] = [root];
    let total = 0;
    for (let d = queue.shift(); d !== undefined; d = queue.shift()) {
      if (seen.has(d)) continue;
      seen.add(d);
      const info = await this.deps.content.info(d);
      if (info) total += info.size;
      queue.push(...(await this.deps.metadata.content.references(d)));
    }
    return total;
  }
}

/** A blob's bytes, or undefined when it is not in the store (a pull that did not finish, garbage collected). */
async function readStored(content: ContentStore, digest: Digest, max: number): Promise<Buffer | undefined> {
  try {
    return await content.readBytes(digest, max);
  } catch (err) {
    if (isBerthError(err, 'NOT_FOUND')) return undefined;
    throw err;
  }
}

/** The name an image is stored under: the normalised reference. */
export function canonicalName(ref: string): string {
  return formatReference(parseReference(ref));
}
