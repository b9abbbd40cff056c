import { createWriteStream } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Transform, type TransformCallback, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pack as tarPack, type Header, type Pack } from 'tar-stream';
import type { ContentStore } from '../content/store.js';
import { BerthError } from '../errors.js';
import type { Logger } from '../log.js';
import type { ImageRecord, MetadataStore } from '../metadata/store.js';
import {
  isIndex,
  isManifest,
  MAX_MANIFEST_BYTES,
  MediaType,
  parseIndex,
  parseManifest,
  parseReference,
  type Descriptor,
  type Digest,
} from '../oci/index.js';
import { LayoutAnnotation, layoutBlobPath, OCI_LAYOUT_VERSION } from './import.js';
import { canonicalName } from './inventory.js';

/**
 * Exporting an image as an OCI archive: a tar of an OCI image layout, as
 * `ctr export` writes it, so skopeo (oci-archive:), `ctr import` and
 * `berth image import` read it. index.json holds the image's descriptor,
 * annotated with the tag (org.opencontainers.image.ref.name) and the full
 * name (io.containerd.image.name); blobs/ holds every blob the image
 * references: for an index, the index and the platform manifests it was
 * pulled for (its reference labels), each with its config and layers.
 *
 * Contracts:
 * - Blobs stream from the content store; none is held in memory.
 * - Every referenced blob must be present, checked before anything is written.
 * - A file is written as FILE.tmp, synced, then renamed: FILE is whole or absent.
 * - The archive is deterministic: same image, same bytes (fixed order, mtime 0,
 *   uid/gid 0), so exporting twice gives the same file.
 */

export interface ExportResult {
  name: string;
  target: Descriptor;
  /** The blobs written, in archive order. */
  blobs: Descriptor[];
  /** Size of the archive. */
  bytes: number;
}

export interface ExporterDeps {
  content: ContentStore;
  metadata: MetadataStore;
  logger: Logger;
}

const ARCHIVE_MTIME = new Date(0);

export class ImageExporter {
  constructor(private readonly deps: ExporterDeps) {}

  /** Writes the archive to `file` through `file.tmp`; on failure neither is left behind. */
  async exportToFile(ref: string, file: string): Promise<ExportResult> {
    const plan = await this.plan(ref);
    const tmp = `${file}.tmp`;
    let result: ExportResult;
    try {
      // flush: fsync before close, so the rename below publishes whole data after a power cut.
      result = await this.write(plan, createWriteStream(tmp, { mode: 0o644, flush: true, highWaterMark: 1 << 20 }));
      await rename(tmp, file);
      await syncDir(dirname(file));
    } catch (err) {
      await unlink(tmp).catch(() => {});
      throw fileError(err, file);
    }
    this.deps.logger.info('exported', { name: result.name, digest: result.target.digest, file, bytes: result.bytes });
    return result;
  }

  /** Streams the archive into `out` (ended when done). */
  async exportToStream(ref: string, out: Writable): Promise<ExportResult> {
    return this.write(await this.plan(ref), out);
  }

  /** The record and every blob to write, all checked present. */
  private async plan(ref: string): Promise<{ record: ImageRecord; blobs: Descriptor[] }> {
    const { content, metadata } = this.deps;
    const name = canonicalName(ref);
    const record = await metadata.images.get(name);
    if (!record) throw new BerthError('NOT_FOUND', `image ${name} not found`, { hint: `pull or import it first: berth image pull ${ref}` });
    const root = record.target;
    const blobs: Descriptor[] = [];
    const need = async (desc: Descriptor, what: string): Promise<void> => {
      const info = await content.info(desc.digest);
      if (!info) {
        throw new BerthError('NOT_FOUND', `image ${name}: ${what} ${desc.digest} is not in the content store`, {
          // --no-unpack: a pull that unpacks skips the blobs of layers it has as snapshots, and those may be what is missing.
          hint: `fetch what is missing: berth image pull --no-unpack ${ref}`,
          details: { digest: desc.digest },
        });
      }
      if (info.size !== desc.size) {
        throw new BerthError('CORRUPT', `image ${name}: ${what} ${desc.digest} is ${info.size} bytes in the content store but its descriptor says ${desc.size}`, { details: { digest: desc.digest } });
      }
      if (!blobs.some((b) => b.digest === desc.digest)) blobs.push(desc);
    };

    let manifests: Descriptor[];
    if (isIndex(root.mediaType)) {
      await need(root, 'index');
      const index = parseIndex(await content.readBytes(root.digest, MAX_MANIFEST_BYTES), root.mediaType, `index ${root.digest} of ${name}`);
      const referenced = new Set(await metadata.content.references(root.digest));
      manifests = index.manifests.filter((m) => referenced.has(m.digest));
      if (!manifests.length) throw new BerthError('NOT_FOUND', `image ${name}: index ${root.digest} has no stored platform manifest`, { hint: `pull the image again: berth image pull ${ref}` });
    } else if (isManifest(root.mediaType)) {
      manifests = [root];
    } else {
      throw new BerthError('UNSUPPORTED', `image ${name} (${root.digest}) has media type ${root.mediaType}, which is neither an image manifest nor an index`);
    }
    for (const m of manifests) {
      await need(m, 'manifest');
      const manifest = parseManifest(await content.readBytes(m.digest, MAX_MANIFEST_BYTES), m.mediaType, `manifest ${m.digest} of ${name}`);
      await need(manifest.config, `config of manifest ${m.digest}`);
      for (const [i, l] of manifest.layers.entries()) await need(l, `layer ${i} of manifest ${m.digest}`);
    }
    return { record, blobs };
  }

  private async write(plan: { record: ImageRecord; blobs: Descriptor[] }, out: Writable): Promise<ExportResult> {
    const { record, blobs } = plan;
    const tag = parseReference(record.name).tag;
    const target: Descriptor = {
      mediaType: record.target.mediaType,
      digest: record.target.digest,
      size: record.target.size,
      annotations: {
        ...record.target.annotations,
        [LayoutAnnotation.imageName]: record.name,
        ...(tag ? { [LayoutAnnotation.refName]: tag } : {}),
      },
    };
    const index = { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [target] };

    const pack = tarPack();
    const counter = new ByteCounter();
    const written = pipeline(pack, counter, out);
    written.catch(() => {}); // awaited below; an early failure must not go unhandled meanwhile
    try {
      // Small documents first, so a streaming reader knows what it is reading before the blobs come.
      await addEntry(pack, 'oci-layout', Buffer.from(JSON.stringify({ imageLayoutVersion: OCI_LAYOUT_VERSION })));
      await addEntry(pack, 'index.json', Buffer.from(JSON.stringify(index)));
      for (const dir of ['blobs/', ...new Set(blobs.map((b) => `${dirname(layoutBlobPath(b.digest))}/`))]) await addEntry(pack, dir);
      for (const b of blobs) await this.addBlob(pack, b.digest, b.size);
      pack.finalize();
      await written;
    } catch (err) {
      pack.destroy(err as Error);
      await written.catch(() => {});
      throw err;
    }
    return { name: record.name, target: record.target, blobs, bytes: counter.bytes };
  }

  private async addBlob(pack: Pack, digest: Digest, size: number): Promise<void> {
    const reader = await this.deps.content.reader(digest);
    const entry = pack.entry(header(layoutBlobPath(digest), size, 0o444));
    await pipeline(reader, entry as unknown as Writable);
  }
}

type EntryHeader = Partial<Header> & Pick<Header, 'name'>;

function header(name: string, size: number, mode: number): EntryHeader {
  return { name, size, mode, type: 'file', mtime: ARCHIVE_MTIME, uid: 0, gid: 0, uname: '', gname: '' };
}

/** A file holding `data`, or without data a directory. */
function addEntry(pack: Pack, name: string, data?: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error | null): void => (err ? reject(err) : resolve());
    if (data) pack.entry(header(name, data.length, 0o644), data, done);
    else pack.entry({ ...header(name, 0, 0o755), type: 'directory' }, done);
  });
}

async function syncDir(dir: string): Promise<void> {
  const dh = await open(dir, 'r');
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}

/** fs errors while writing FILE, translated where they enter; BerthErrors pass through. */
function fileError(err: unknown, file: string): unknown {
  const code = (err as { code?: unknown } | null)?.code;
  if (err instanceof BerthError || typeof code !== 'string') return err;
  const text = `cannot write ${file}: ${(err as Error).message}`;
  if (code === 'ENOSPC' || code === 'EDQUOT') return new BerthError('UNAVAILABLE', text, { cause: err, hint: 'the filesystem is full; free space or write elsewhere' });
  return new BerthError('INVALID_ARGUMENT', text, { cause: err });
}

class ByteCounter extends Transform {
  bytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    cb(null, chunk);
  }
}
