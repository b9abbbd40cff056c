import { createHash } from 'node:crypto';
import { createReadStream, type Stats } from 'node:fs';
import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { join, posix, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { extract as tarExtract, type Header } from 'tar-stream';
import type { ContentStore } from '../content/store.js';
import { BerthError, isBerthError } from '../errors.js';
import type { EventPublisher } from '../events.js';
import type { Logger } from '../log.js';
import { RefLabel, type ImageRecord, type LeaseHolder, type MetadataStore } from '../metadata/store.js';
import {
  digestAlgorithm,
  digestHex,
  formatPlatform,
  isConfig,
  isDigest,
  isIndex,
  isManifest,
  layerCompression,
  MAX_CONFIG_BYTES,
  MAX_MANIFEST_BYTES,
  MediaType,
  normalizePlatform,
  parseImageConfig,
  parseReference,
  parseIndex,
  parseManifest,
  platformMatcher,
  sha256,
  type Descriptor,
  type Digest,
  type ImageConfig,
  type Platform,
} from '../oci/index.js';
import { canonicalName } from './inventory.js';
import { PlatformLabel, selectManifest } from './pull.js';

/**
 * Importing images from files: the air-gap path. Three inputs, told apart by
 * what they hold, never by their file names:
 *   - an OCI image layout directory: oci-layout, index.json, blobs/<alg>/<hex>;
 *   - an OCI archive: that layout in a tar, gzip-compressed or not (sniffed by
 *     the magic bytes 1f 8b);
 *   - a `docker save` tar: manifest.json listing a config and layers, as
 *     <id>/layer.tar (classic) or blobs/sha256/<hex> (Docker 25+). Docker 25+
 *     archives also carry an OCI layout, and are then read as OCI.
 *
 * Verification is a pull's: every blob enters through a content-store ingest
 * that checks its size and digest on commit; indexes, manifests and configs go
 * through the oci/ parsers; media types must be known; the layer count must
 * match the config's diff_ids; an index is narrowed to one platform by
 * selectManifest. Content references are labelled and names recorded only
 * after every image of the input checked out, so a failure records nothing.
 * A lease protects what was stored from the garbage collector; after a
 * failure (or a SIGKILL) it stays until it expires, so a rerun finds those
 * blobs present and does not write them again.
 *
 * Reading a tar. A tar is read front to back, its entries come in any order,
 * and a layer must never be held in memory. Pass 1 reads the whole archive:
 *   - a blobs/<alg>/<hex> entry streams straight into an ingest expecting that
 *     digest: the name is a claim, and the content store checks it on commit;
 *   - the few small documents (oci-layout, index.json, manifest.json,
 *     repositories, *.json configs) are kept in memory, capped;
 *   - every other file (a classic docker save's <id>/layer.tar) is hashed on the
 *     way in and its bytes dropped. Its digest is not in its name, and the
 *     content store takes the expected digest when an ingest opens, so it
 *     cannot be stored while it streams past.
 * Then the images are resolved from the documents. Layers pass 1 hashed and
 * the store lacks are written by pass 2: a second read of the file that
 * streams just those entries into ingests expecting the digests pass 1 found,
 * which the config's diff_ids have confirmed by then. Staging a copy instead
 * would need the layers' size again in free disk, which an edge device may
 * not have; the second read costs only time, and only for classic docker save
 * archives. A pipe cannot be read twice, so those must come from a file.
 */

export interface ImportOptions {
  /**
   * The name to record, instead of the names the input carries; required when
   * it carries none. Normalised like a pull's reference.
   */
  name?: string;
  /** Wanted platform for an index; the host's when absent. */
  platform?: Platform;
}

export type ImportFormat = 'oci-layout' | 'oci-archive' | 'docker-archive';

export interface ImportedImage {
  record: ImageRecord;
  /** The platform manifest (the target itself when it is not an index). */
  manifest: Descriptor;
  config: Descriptor;
  platform: Platform;
}

export interface ImportResult {
  format: ImportFormat;
  /** One per recorded name. */
  images: ImportedImage[];
  /** Bytes written into the content store (blobs already present count zero). */
  storedBytes: number;
  durationMs: number;
}

export interface ImporterDeps {
  content: ContentStore;
  metadata: MetadataStore;
  events: EventPublisher;
  logger: Logger;
  /** Used when ImportOptions.platform is absent. */
  hostPlatform: Platform;
  /** How long a failed import's lease protects its content (default 24 h). */
  leaseTtlMs?: number;
  /** This process, recorded in the leases it takes (see PullerDeps.leaseHolder). */
  leaseHolder?: LeaseHolder;
  now?: () => number;
}

/** Annotations naming an image in an OCI layout's index.json, as containerd reads and writes them. */
export const LayoutAnnotation = {
  /** The OCI spec's: usually just the tag ("1.36"), sometimes a whole reference. */
  refName: 'org.opencontainers.image.ref.name',
  /** containerd's: the full name, "docker.io/library/busybox:1.36". */
  imageName: 'io.containerd.image.name',
} as const;

export const OCI_LAYOUT_VERSION = '1.0.0';

/** The path of a blob inside an OCI layout. */
export function layoutBlobPath(d: Digest): string {
  return `blobs/${digestAlgorithm(d)}/${digestHex(d)}`;
}

const IO_CHUNK = 1 << 20;
const MAX_LAYOUT_FILE_BYTES = 4096;
/** What pass 1 keeps of small documents, all together; beyond it they are only hashed. */
const MAX_DOCUMENT_BYTES = 64 << 20;
const NOT_AN_IMAGE_HINT = 'berth image import reads an OCI image layout directory, an OCI archive (.tar or .tar.gz) or a `docker save` tar';

interface Expected {
  digest: Digest;
  size: number;
}

interface BlobRequest {
  /** The file in the input that holds the blob. */
  file: string;
  desc: Expected;
  /** For messages: "layer 2 of manifest sha256:…". */
  what: string;
}

/** An image checked out and ready to be labelled and named. */
interface Resolved {
  target: Descriptor;
  manifest: Descriptor;
  config: Descriptor;
  layers: Descriptor[];
  platform: Platform;
}

export class ImageImporter {
  private readonly now: () => number;

  constructor(private readonly deps: ImporterDeps) {
    this.now = deps.now ?? Date.now;
  }

  async import(path: string, opts: ImportOptions = {}): Promise<ImportResult> {
    const { metadata } = this.deps;
    const started = this.now();
    const wantedName = opts.name === undefined ? undefined : canonicalName(opts.name);
    const platform = normalizePlatform(opts.platform ?? this.deps.hostPlatform);
    const st = await statInput(path);
    const log = this.deps.logger.child({ import: path });
    const lease = await metadata.leases.create({ ttlMs: this.deps.leaseTtlMs ?? 24 * 3600_000, labels: { 'berth.io/import': path }, ...(this.deps.leaseHolder ? { holder: this.deps.leaseHolder } : {}) });
    try {
      return await this.importLeased(path, st, lease.id, { wantedName, platform, explicitPlatform: opts.platform !== undefined, started, log });
    } catch (err) {
      // What was stored stays protected until the lease expires; settled, it no longer marks an import in progress
      // (which holds back snapshot collection).
      await metadata.leases.settle(lease.id).catch(() => {});
      throw err;
    }
  }

  private async importLeased(
    path: string,
    st: Stats,
    leaseId: string,
    o: { wantedName: string | undefined; platform: Platform; explicitPlatform: boolean; started: number; log: Logger },
  ): Promise<ImportResult> {
    const { metadata, events } = this.deps;
    const { wantedName, platform, log } = o;
    const sink = new BlobSink(this.deps.content, metadata, leaseId);

    const source = st.isDirectory() ? new DirectorySource(path, sink) : await ArchiveSource.scan(path, sink, st.isFile());
    const layout = await source.has('oci-layout');
    const index = await source.has('index.json');
    const docker = await source.has('manifest.json');
    let format: ImportFormat;
    let images: Array<{ names: string[]; resolved: Resolved }>;
    const ctx: PlanContext = { source, sink, path, wantedName, platform, explicitPlatform: o.explicitPlatform, log };
    if (index && (layout || !docker)) {
      format = source instanceof DirectorySource ? 'oci-layout' : 'oci-archive';
      images = await this.planLayout(ctx);
    } else if (docker) {
      format = 'docker-archive';
      images = await this.planDockerSave(ctx);
    } else {
      throw new BerthError('INVALID_ARGUMENT', `${path} is not an image: ${await source.summary()} but neither index.json (an OCI layout) nor manifest.json (a docker save)`, {
        hint: NOT_AN_IMAGE_HINT,
      });
    }

    for (const { names, resolved: r } of images) {
      for (const name of names) {
        const pinned = parseReference(name).digest;
        if (pinned && pinned !== r.target.digest) {
          throw new BerthError('INVALID_ARGUMENT', `${path}: the name ${name} pins digest ${pinned}, but the image is ${r.target.digest}`, { hint: 'name it by a tag instead: --name REPO:TAG' });
        }
      }
    }

    // Reference labels first (every blob they name is present), then the names.
    for (const { resolved: r } of images) {
      await metadata.content.set(r.manifest.digest, {
        [RefLabel.config]: r.config.digest,
        ...Object.fromEntries(r.layers.map((l, i) => [RefLabel.layer(i), l.digest])),
      });
      if (r.target.digest !== r.manifest.digest) await metadata.content.set(r.target.digest, { [RefLabel.manifest(0)]: r.manifest.digest });
    }
    const imported: ImportedImage[] = [];
    for (const { names, resolved: r } of images) {
      for (const name of names) {
        const { record, previous } = await metadata.images.put({ name, target: r.target, labels: { [PlatformLabel]: formatPlatform(r.platform) } });
        if (!previous) events.publish({ type: 'image.created', name, digest: r.target.digest });
        else if (previous.target.digest !== r.target.digest) events.publish({ type: 'image.updated', name, digest: r.target.digest, previous: previous.target.digest });
        imported.push({ record, manifest: r.manifest, config: r.config, platform: r.platform });
      }
    }
    await metadata.leases.delete(leaseId);
    const durationMs = this.now() - o.started;
    log.info('imported', { format, names: imported.map((i) => i.record.name), storedBytes: sink.storedBytes, durationMs });
    return { format, images: imported, storedBytes: sink.storedBytes, durationMs };
  }

  /** index.json's entries, grouped by name, each narrowed to one image and checked. */
  private async planLayout(ctx: PlanContext): Promise<Array<{ names: string[]; resolved: Resolved }>> {
    const { source, path } = ctx;
    const layoutFile = await source.document('oci-layout', MAX_LAYOUT_FILE_BYTES);
    if (!layoutFile) {
      throw new BerthError('INVALID_ARGUMENT', `${path} has index.json but no oci-layout file, so it is not an OCI image layout`, { hint: NOT_AN_IMAGE_HINT });
    }
    const version = parseJSONObject(layoutFile, `${path}: oci-layout`).imageLayoutVersion;
    if (version !== OCI_LAYOUT_VERSION) {
      throw new BerthError('UNSUPPORTED', `${path}: oci-layout says imageLayoutVersion ${JSON.stringify(version)}; berth reads ${OCI_LAYOUT_VERSION}`);
    }
    const index = parseIndex((await source.document('index.json', MAX_MANIFEST_BYTES))!, MediaType.ociIndex, `${path}: index.json`);
    if (!index.manifests.length) throw new BerthError('INVALID_ARGUMENT', `${path}: index.json lists no images`, { hint: NOT_AN_IMAGE_HINT });

    const groups = new Map<string, Descriptor[]>();
    const tagsOnly: string[] = [];
    let skipped = 0;
    for (const desc of index.manifests) {
      const named = ctx.wantedName ? { name: ctx.wantedName } : layoutName(desc, path);
      if (named.name) groups.set(named.name, [...(groups.get(named.name) ?? []), desc]);
      else if (named.tag) tagsOnly.push(named.tag);
      else skipped++;
    }
    if (!groups.size) throw unnamed(path, tagsOnly.length ? `index.json names its images only by tag (${tagsOnly.join(', ')}), without a repository` : 'index.json carries no image names');
    if (skipped + tagsOnly.length) ctx.log.warn('index.json entries without a name are not imported', { count: skipped + tagsOnly.length });

    const byTarget = new Map<Digest, { names: string[]; resolved: Resolved }>();
    for (const [name, descs] of groups) {
      const target = pickEntry(descs, name, ctx);
      const known = byTarget.get(target.digest);
      if (known) {
        known.names.push(name);
        continue;
      }
      byTarget.set(target.digest, { names: [name], resolved: await this.resolveLayoutImage(ctx, target, `${path}: ${name}`) });
    }
    return [...byTarget.values()];
  }

  /** Like a pull after resolve: index → platform manifest → config → layers, each stored and checked. */
  private async resolveLayoutImage(ctx: PlanContext, target: Descriptor, what: string): Promise<Resolved> {
    let manifestDesc = target;
    let fromIndex = false;
    if (isIndex(target.mediaType)) {
      const index = parseIndex(await this.readBlob(ctx, target, MAX_MANIFEST_BYTES, `index ${target.digest}`), target.mediaType, `${what}: index ${target.digest}`);
      manifestDesc = selectManifest(index, ctx.platform, what);
      fromIndex = true;
    } else if (!isManifest(target.mediaType)) {
      throw new BerthError('UNSUPPORTED', `${what}: ${target.digest} has media type ${target.mediaType}, which is neither an image manifest nor an index`, {
        hint: 'berth imports container images; artifacts of other types are not supported',
      });
    }
    const mwhat = `manifest ${manifestDesc.digest}`;
    const manifest = parseManifest(await this.readBlob(ctx, manifestDesc, MAX_MANIFEST_BYTES, mwhat), manifestDesc.mediaType, `${what}: ${mwhat}`);
    if (!isConfig(manifest.config.mediaType)) {
      throw new BerthError('UNSUPPORTED', `${what}: ${mwhat} has config media type ${manifest.config.mediaType}, which is not an image config`, {
        hint: 'this is probably an OCI artifact, not a container image',
      });
    }
    for (const [i, l] of manifest.layers.entries()) {
      if (layerCompression(l.mediaType) === undefined) throw new BerthError('UNSUPPORTED', `${what}: layer ${i} (${l.digest}) of ${mwhat} has unknown media type ${l.mediaType}`);
    }
    const configBytes = await this.readBlob(ctx, manifest.config, MAX_CONFIG_BYTES, `config of ${mwhat}`);
    const config = parseImageConfig(configBytes, `${what}: config ${manifest.config.digest}`);
    if (config.rootfs.diff_ids.length !== manifest.layers.length) {
      throw new BerthError('INVALID_MANIFEST', `${what}: ${mwhat} has ${manifest.layers.length} layers but its config ${manifest.config.digest} lists ${config.rootfs.diff_ids.length} diff_ids`);
    }
    const platform = configPlatform(config);
    if (!fromIndex) checkSinglePlatform(ctx, platform, what);
    await ctx.source.store(manifest.layers.map((l, i) => ({ file: layoutBlobPath(l.digest), desc: l, what: `layer ${i} of ${mwhat}` })));
    return { target, manifest: manifestDesc, config: manifest.config, layers: manifest.layers, platform };
  }

  /** manifest.json's entries: each a config and uncompressed layers, for which a Docker schema2 manifest is made. */
  private async planDockerSave(ctx: PlanContext): Promise<Array<{ names: string[]; resolved: Resolved }>> {
    const { source, path } = ctx;
    const entries = parseDockerManifest((await source.document('manifest.json', MAX_MANIFEST_BYTES))!, `${path}: manifest.json`);
    if (!entries.length) throw new BerthError('INVALID_ARGUMENT', `${path}: manifest.json lists no images`, { hint: NOT_AN_IMAGE_HINT });
    if (ctx.wantedName && entries.length > 1) {
      throw new BerthError('INVALID_ARGUMENT', `${path} holds ${entries.length} images (${entries.map((e) => e.RepoTags.join(' ') || e.Config).join('; ')}); --name can name only one`, {
        hint: 'import it without --name to keep the names the archive carries',
      });
    }
    const named = entries.map((e) => ({ entry: e, names: ctx.wantedName ? [ctx.wantedName] : e.RepoTags.map((t) => archiveName(t, path)) }));
    const images = named.filter((n) => n.names.length);
    if (!images.length) throw unnamed(path, 'manifest.json has no RepoTags');
    if (images.length < named.length) ctx.log.warn('manifest.json entries without RepoTags are not imported', { count: named.length - images.length });
    const out = [];
    for (const { entry, names } of images) out.push({ names, resolved: await this.resolveDockerImage(ctx, entry, `${path}: ${names[0]}`) });
    return out;
  }

  private async resolveDockerImage(ctx: PlanContext, entry: DockerManifestEntry, what: string): Promise<Resolved> {
    const { source } = ctx;
    const configFile = await source.file(entry.Config);
    if (!configFile) throw new BerthError('NOT_FOUND', `${what}: config ${entry.Config} named by manifest.json is not in ${ctx.path}`);
    const claimed = digestInName(entry.Config);
    if (claimed && claimed !== configFile.digest) {
      throw new BerthError('DIGEST_MISMATCH', `${what}: config ${entry.Config} does not hold what its name says: found ${configFile.digest}`, {
        details: { file: entry.Config, expected: claimed, found: configFile.digest },
      });
    }
    const configBytes = await source.document(entry.Config, MAX_CONFIG_BYTES);
    const config = parseImageConfig(configBytes!, `${what}: config ${entry.Config}`);
    const diffIds = config.rootfs.diff_ids;
    if (diffIds.length !== entry.Layers.length) {
      throw new BerthError('INVALID_MANIFEST', `${what}: manifest.json lists ${entry.Layers.length} layers but config ${entry.Config} lists ${diffIds.length} diff_ids`);
    }
    const layers: Descriptor[] = [];
    for (const [i, file] of entry.Layers.entries()) {
      const found = await source.file(file);
      if (!found) throw new BerthError('NOT_FOUND', `${what}: layer ${i} (${file}) named by manifest.json is not in ${ctx.path}`);
      // A docker save layer is an uncompressed tar: its digest is its diffID.
      if (found.digest !== diffIds[i]) {
        throw new BerthError('DIGEST_MISMATCH', `${what}: layer ${i} (${file}) hashes to ${found.digest} but config ${entry.Config} lists diff_ids[${i}] ${diffIds[i]}`, {
          details: { file, expected: diffIds[i], found: found.digest },
        });
      }
      layers.push({ mediaType: MediaType.dockerLayer, digest: found.digest, size: found.size });
    }
    const platform = configPlatform(config);
    checkSinglePlatform(ctx, platform, what);

    const configDesc: Descriptor = { mediaType: MediaType.dockerConfig, digest: configFile.digest, size: configFile.size };
    await source.store([
      { file: entry.Config, desc: configDesc, what: 'config' },
      ...layers.map((l, i) => ({ file: entry.Layers[i]!, desc: l, what: `layer ${i}` })),
    ]);
    // The same bytes containerd's importer writes for a docker save, so both name the image by the same digest.
    const manifestBytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.dockerManifest, config: configDesc, layers }));
    const manifest: Descriptor = { mediaType: MediaType.dockerManifest, digest: sha256(manifestBytes), size: manifestBytes.length };
    await ctx.sink.write(manifest, manifestBytes, `${what}: synthesised manifest`);
    return { target: manifest, manifest, config: configDesc, layers, platform };
  }

  private async readBlob(ctx: PlanContext, desc: Descriptor, max: number, what: string): Promise<Buffer> {
    if (desc.size > max) throw new BerthError('TOO_LARGE', `${ctx.path}: ${what} is ${desc.size} bytes, above the ${max}-byte limit`);
    await ctx.source.store([{ file: layoutBlobPath(desc.digest), desc, what }]);
    return this.deps.content.readBytes(desc.digest, max);
  }
}

interface PlanContext {
  source: ImageSource;
  sink: BlobSink;
  path: string;
  wantedName: string | undefined;
  platform: Platform;
  explicitPlatform: boolean;
  log: Logger;
}

// --- names and checks ---

/** The name of an index.json entry: containerd's full-name annotation, else ref.name when it is a whole reference. */
function layoutName(desc: Descriptor, path: string): { name?: string; tag?: string } {
  const full = desc.annotations?.[LayoutAnnotation.imageName];
  if (full) return { name: archiveName(full, path) };
  const ref = desc.annotations?.[LayoutAnnotation.refName];
  if (!ref) return {};
  // A bare tag ("1.36", "latest") names no repository.
  return /[/:@]/.test(ref) ? { name: archiveName(ref, path) } : { tag: ref };
}

function archiveName(ref: string, path: string): string {
  try {
    return canonicalName(ref);
  } catch (err) {
    if (!isBerthError(err)) throw err;
    throw new BerthError(err.code, `${path}: ${err.message}`, { cause: err, hint: err.hint ?? 'name the image with --name REF', details: err.details });
  }
}

function unnamed(path: string, why: string): BerthError {
  return new BerthError('INVALID_ARGUMENT', `${path} carries no image name: ${why}`, { hint: `name it: berth image import --name REPO[:TAG] ${path}` });
}

/** One entry of a name: itself, or, when the name lists several platform manifests, the platform's. */
function pickEntry(entries: Descriptor[], name: string, ctx: PlanContext): Descriptor {
  const descs = [...new Map(entries.map((d) => [d.digest, d])).values()];
  if (descs.length === 1) return descs[0]!;
  if (descs.every((d) => isManifest(d.mediaType) && d.platform)) {
    return selectManifest({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: descs }, ctx.platform, `${ctx.path}: ${name}`);
  }
  throw new BerthError('INVALID_ARGUMENT', `${ctx.path}: index.json lists ${descs.length} images for ${name} (${descs.map((d) => d.digest).join(', ')}) and they are not platform variants of one image`, {
    hint: ctx.wantedName ? 'import it without --name to keep the names the archive carries' : 'export one image per name',
  });
}

function checkSinglePlatform(ctx: PlanContext, found: Platform, what: string): void {
  if (platformMatcher(ctx.platform).match(found)) return;
  if (ctx.explicitPlatform) {
    throw new BerthError('NO_MATCHING_PLATFORM', `${what} is a single-platform image for ${formatPlatform(found)}, not ${formatPlatform(ctx.platform)}`);
  }
  ctx.log.warn('image platform does not match the host', { image: formatPlatform(found), host: formatPlatform(ctx.platform) });
}

function configPlatform(c: ImageConfig): Platform {
  return normalizePlatform({ os: c.os, architecture: c.architecture, ...(c.variant ? { variant: c.variant } : {}) });
}

interface DockerManifestEntry {
  Config: string;
  RepoTags: string[];
  Layers: string[];
}

function parseDockerManifest(bytes: Buffer, what: string): DockerManifestEntry[] {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new BerthError('INVALID_MANIFEST', `${what}: not valid JSON (${(err as Error).message})`);
  }
  if (!Array.isArray(doc)) throw new BerthError('INVALID_MANIFEST', `${what}: not a JSON array of images`);
  return doc.map((e: unknown, i): DockerManifestEntry => {
    const o = (e ?? {}) as Record<string, unknown>;
    const strings = (v: unknown): v is string[] => Array.isArray(v) && v.every((s) => typeof s === 'string');
    if (typeof o.Config !== 'string' || !strings(o.Layers) || !(o.RepoTags == null || strings(o.RepoTags))) {
      throw new BerthError('INVALID_MANIFEST', `${what}: entry ${i} needs Config (a path), Layers (paths) and RepoTags (names or null)`);
    }
    return { Config: entryName(o.Config), RepoTags: (o.RepoTags as string[] | null) ?? [], Layers: o.Layers.map(entryName) };
  });
}

/** The digest a docker save file name claims: blobs/<alg>/<hex>, or <hex>.json for a classic config (the image ID). */
function digestInName(name: string): Digest | undefined {
  const blob = blobDigest(name);
  if (blob) return blob;
  const m = /^([a-f0-9]{64})\.json$/.exec(name);
  return m ? (`sha256:${m[1]}` as Digest) : undefined;
}

function blobDigest(name: string): Digest | undefined {
  const m = /^blobs\/([a-z0-9]+)\/([a-f0-9]+)$/.exec(name);
  const d = m ? `${m[1]}:${m[2]}` : undefined;
  return isDigest(d) ? d : undefined;
}

function parseJSONObject(bytes: Buffer, what: string): Record<string, unknown> {
  try {
    const v: unknown = JSON.parse(bytes.toString('utf8'));
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // reported below
  }
  throw new BerthError('INVALID_MANIFEST', `${what}: not a JSON object`);
}

/** A tar member's name as a key: no "./" or "/" prefix, no trailing "/", "." and ".." segments folded. */
function entryName(raw: string): string {
  return posix.normalize(raw.replace(/^(\.\/|\/)+/, '')).replace(/\/+$/, '');
}

// --- writing blobs ---

/** Where every blob of an import goes: the content store, each digest protected by the import's lease first. */
class BlobSink {
  storedBytes = 0;
  private readonly protectedDigests = new Set<Digest>();

  constructor(
    private readonly content: ContentStore,
    private readonly metadata: MetadataStore,
    private readonly leaseId: string,
  ) {}

  private async protect(d: Digest): Promise<void> {
    if (this.protectedDigests.has(d)) return;
    await this.metadata.leases.addResource(this.leaseId, { type: 'content', id: d });
    this.protectedDigests.add(d);
  }

  read(d: Digest, max: number): Promise<Buffer> {
    return this.content.readBytes(d, max);
  }

  /**
   * Whether the store holds the blob already (then it is protected); SIZE_MISMATCH when it does under another size.
   * Protected before the look: a garbage collector deletes a blob only if no lease names it once it is out of sight.
   */
  async has(desc: Expected, what: string): Promise<boolean> {
    await this.protect(desc.digest);
    const info = await this.content.info(desc.digest);
    if (!info) return false;
    if (info.size !== desc.size) {
      throw new BerthError('SIZE_MISMATCH', `${what}: the descriptor says ${desc.size} bytes but blob ${desc.digest} has ${info.size}`, {
        details: { digest: desc.digest, expected: desc.size, found: info.size },
      });
    }
    return true;
  }

  /**
   * Streams data into an ingest expecting desc; the store verifies size and
   * digest on commit. The data is always read to its end (a tar entry must be),
   * even when the blob turns out to be present already.
   */
  async write(desc: Expected, data: Readable | Buffer, what: string): Promise<void> {
    await this.protect(desc.digest);
    const present = await this.content.info(desc.digest);
    const w = await this.content.writer(`import-${desc.digest}`, desc);
    try {
      // A killed import left partial bytes of unknown origin: start over rather than trust them.
      if (w.offset > 0) await w.truncate();
      await pipeline(Buffer.isBuffer(data) ? Readable.from([data]) : data, w.stream());
      await w.commit();
    } catch (err) {
      await w.abort().catch(() => {});
      throw blobError(err, what, desc);
    }
    if (!present) this.storedBytes += desc.size;
  }
}

/** Puts the input's location into the content store's errors. */
function blobError(err: unknown, what: string, desc: Expected): unknown {
  // The input failed (a truncated tar, an I/O error): the reader of the input translates that.
  if (!isBerthError(err)) return err;
  if (err.code === 'DIGEST_MISMATCH') {
    return new BerthError('DIGEST_MISMATCH', `${what} does not hold blob ${desc.digest}: its bytes hash to ${String(err.details.found)}`, { cause: err, details: err.details });
  }
  if (err.code === 'SIZE_MISMATCH') {
    return new BerthError('SIZE_MISMATCH', `${what}: expected ${desc.size} bytes of ${desc.digest}: ${err.message}`, { cause: err, details: err.details });
  }
  return new BerthError(err.code, `${what}: ${err.message}`, { cause: err, details: err.details, ...(err.hint ? { hint: err.hint } : {}) });
}

// --- sources ---

/** What an import reads from, directory or archive, once it can answer questions about its files. */
interface ImageSource {
  has(file: string): Promise<boolean>;
  /** A small file, whole; undefined when absent, TOO_LARGE above max. */
  document(file: string, max: number): Promise<Buffer | undefined>;
  /** Digest and size of a file (docker save's, whose digest is not in their names); undefined when absent. */
  file(file: string): Promise<Expected | undefined>;
  /** Makes the content store hold each blob, taking its bytes from its file; NOT_FOUND when a file is missing. */
  store(blobs: BlobRequest[]): Promise<void>;
  /** A few words on what the input holds, for "not an image" errors. */
  summary(): Promise<string>;
}

async function statInput(path: string): Promise<Stats> {
  try {
    return await stat(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new BerthError('NOT_FOUND', `${path}: no such file or directory`, { cause: err });
    throw new BerthError('INVALID_ARGUMENT', `${path}: cannot read: ${(err as Error).message}`, { cause: err });
  }
}

/** An unpacked OCI layout (or docker save tree): random access, so only the blobs an image needs are read. */
class DirectorySource implements ImageSource {
  private root: Promise<string> | undefined;

  constructor(
    private readonly dir: string,
    private readonly sink: BlobSink,
  ) {}

  /** The real path of a file inside the directory; undefined when absent; never a path outside it. */
  private async locate(file: string): Promise<string | undefined> {
    if (file === '..' || file.startsWith('../') || posix.isAbsolute(file)) {
      throw new BerthError('INVALID_MANIFEST', `${this.dir}: ${JSON.stringify(file)} points outside the image directory`);
    }
    const root = await (this.root ??= realpath(this.dir));
    let real: string;
    try {
      real = await realpath(join(root, file));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw readError(err, join(this.dir, file));
    }
    if (real !== root && !real.startsWith(root + sep)) {
      throw new BerthError('INVALID_MANIFEST', `${this.dir}: ${file} is a symlink to ${real}, outside the image directory`);
    }
    return real;
  }

  async has(file: string): Promise<boolean> {
    const p = await this.locate(file);
    return p !== undefined && (await stat(p)).isFile();
  }

  async document(file: string, max: number): Promise<Buffer | undefined> {
    const p = await this.locate(file);
    if (!p) return undefined;
    const { size } = await stat(p);
    if (size > max) throw new BerthError('TOO_LARGE', `${join(this.dir, file)} is ${size} bytes, above the ${max}-byte limit`);
    return readFile(p);
  }

  async file(file: string): Promise<Expected | undefined> {
    const p = await this.locate(file);
    if (!p) return undefined;
    const hash = createHash('sha256');
    let size = 0;
    try {
      for await (const chunk of createReadStream(p, { highWaterMark: IO_CHUNK })) {
        hash.update(chunk as Buffer);
        size += (chunk as Buffer).length;
      }
    } catch (err) {
      throw readError(err, p);
    }
    return { digest: `sha256:${hash.digest('hex')}` as Digest, size };
  }

  async store(blobs: BlobRequest[]): Promise<void> {
    for (const b of blobs) {
      const where = `${join(this.dir, b.file)} (${b.what})`;
      if (await this.sink.has(b.desc, where)) continue;
      const p = await this.locate(b.file);
      if (!p) throw new BerthError('NOT_FOUND', `${this.dir}: blob ${b.desc.digest} (${b.what}) is missing: no file ${b.file}`, { details: { digest: b.desc.digest, file: b.file } });
      await this.sink.write(b.desc, createReadStream(p, { highWaterMark: IO_CHUNK }), where).catch((err: unknown) => {
        throw readError(err, p);
      });
    }
  }

  async summary(): Promise<string> {
    return describeFiles(await readdir(this.dir), 'directory');
  }
}

/**
 * A tar archive after pass 1 (see the top of this file): blobs named by digest
 * are in the content store, small documents in memory, every other file
 * hashed. Pass 2, if a store() needs it, re-reads the file for the rest.
 */
class ArchiveSource implements ImageSource {
  private readonly documents = new Map<string, Buffer>();
  /** Every regular file: its digest and size, and whether pass 1 stored it. */
  private readonly files = new Map<string, Expected & { stored: boolean }>();
  /** Symlinks and hardlinks: docker save links a layer.tar that two images share. */
  private readonly links = new Map<string, string>();
  private documentBytes = 0;

  private constructor(
    private readonly path: string,
    private readonly sink: BlobSink,
    private readonly rereadable: boolean,
  ) {}

  static async scan(path: string, sink: BlobSink, rereadable: boolean): Promise<ArchiveSource> {
    const src = new ArchiveSource(path, sink, rereadable);
    await readTar(path, (name, header, entry) => src.take(name, header, entry));
    return src;
  }

  private async take(name: string, header: Header, entry: AsyncIterable<Buffer>): Promise<void> {
    if (header.type === 'symlink' || header.type === 'link') {
      const target = header.linkname ?? '';
      this.links.set(name, header.type === 'symlink' && !target.startsWith('/') ? posix.join(posix.dirname(name), target) : entryName(target));
      return drain(entry);
    }
    if (!isRegular(header)) return drain(entry);
    const size = header.size ?? 0;
    const digest = blobDigest(name);
    if (digest) {
      await this.sink.write({ digest, size }, Readable.from(entry), `${this.path}: ${name}`);
      this.files.set(name, { digest, size, stored: true });
      return;
    }
    if (isDocument(name) && size <= MAX_CONFIG_BYTES && this.documentBytes + size <= MAX_DOCUMENT_BYTES) {
      const bytes = await readAll(entry);
      this.documents.set(name, bytes);
      this.documentBytes += bytes.length;
      this.files.set(name, { digest: sha256(bytes), size: bytes.length, stored: false });
      return;
    }
    this.files.set(name, { ...(await hashEntry(entry)), stored: false });
  }

  /** Follows links to the regular file they name (a few hops at most). */
  private resolve(file: string): string {
    let name = entryName(file);
    for (let hops = 0; hops < 8 && !this.files.has(name); hops++) {
      const next = this.links.get(name);
      if (next === undefined) break;
      name = entryName(next);
    }
    return name;
  }

  async has(file: string): Promise<boolean> {
    return this.files.has(this.resolve(file));
  }

  async document(file: string, max: number): Promise<Buffer | undefined> {
    const name = this.resolve(file);
    const bytes = this.documents.get(name);
    const f = this.files.get(name);
    if (!f) return undefined;
    if (f.size > max) throw new BerthError('TOO_LARGE', `${this.path}: ${file} is ${f.size} bytes, above the ${max}-byte limit`);
    if (bytes) return bytes;
    if (f.stored) return this.sink.read(f.digest, max);
    // Pass 1 keeps only what a document is named like (or a cap on their total was reached).
    throw new BerthError('UNSUPPORTED', `${this.path}: ${file} was not kept for reading: berth reads documents named *.json (or blobs/<alg>/<hex>), up to ${MAX_DOCUMENT_BYTES} bytes in all`);
  }

  async file(file: string): Promise<Expected | undefined> {
    const f = this.files.get(this.resolve(file));
    return f && { digest: f.digest, size: f.size };
  }

  async store(blobs: BlobRequest[]): Promise<void> {
    const wanted = new Map<string, BlobRequest>();
    for (const b of blobs) {
      const where = `${this.path}: ${b.file} (${b.what})`;
      if (await this.sink.has(b.desc, where)) continue;
      const name = this.resolve(b.file);
      if (!this.files.has(name)) {
        throw new BerthError('NOT_FOUND', `${this.path}: blob ${b.desc.digest} (${b.what}) is missing: the archive has no ${b.file}`, { details: { digest: b.desc.digest, file: b.file } });
      }
      wanted.set(name, b);
    }
    if (!wanted.size) return;
    if (!this.rereadable) {
      throw new BerthError('INVALID_ARGUMENT', `${this.path} is not a regular file, and this archive's layers need a second read`, {
        hint: 'a classic docker save archive is read twice; save it to a file and import that',
      });
    }
    await readTar(this.path, async (name, header, entry) => {
      const b = wanted.get(name);
      if (!b || !isRegular(header)) return drain(entry);
      wanted.delete(name);
      await this.sink.write(b.desc, Readable.from(entry), `${this.path}: ${name} (${b.what})`);
    });
    const [left] = wanted.values();
    if (left) throw new BerthError('NOT_FOUND', `${this.path}: ${left.file} (${left.what}) vanished between two reads of the archive`);
  }

  async summary(): Promise<string> {
    return describeFiles([...this.files.keys()], 'archive');
  }
}

function describeFiles(names: string[], what: string): string {
  if (!names.length) return `the ${what} is empty`;
  return `the ${what} holds ${names.length} file${names.length === 1 ? '' : 's'} (${names.slice(0, 3).join(', ')}${names.length > 3 ? ', …' : ''})`;
}

function isRegular(h: Header): boolean {
  return h.type === 'file' || h.type === 'contiguous-file';
}

const DOCUMENTS = new Set(['oci-layout', 'index.json', 'manifest.json', 'repositories']);

function isDocument(name: string): boolean {
  return DOCUMENTS.has(name) || name.endsWith('.json');
}

// --- reading tar archives ---

/**
 * Reads a tar (gzip-compressed or not) front to back, handing each member to
 * onEntry, which must read it to its end before the next one comes.
 */
async function readTar(path: string, onEntry: (name: string, header: Header, entry: AsyncIterable<Buffer>) => Promise<void>): Promise<void> {
  const extract = tarExtract();
  const fed = pipeline(Readable.from(tarBytes(path)), extract);
  fed.catch(() => {}); // its error reaches the loop below through the extractor
  try {
    for await (const entry of extract) await onEntry(entryName(entry.header.name), entry.header, entry as AsyncIterable<Buffer>);
    await fed;
  } catch (err) {
    throw readError(err, path);
  }
}

/** The tar bytes of an archive file, gunzipped when it starts with gzip's magic. */
async function* tarBytes(path: string): AsyncGenerator<Buffer> {
  const file = createReadStream(path, { highWaterMark: IO_CHUNK });
  const it = file[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let head = Buffer.alloc(0);
  try {
    while (head.length < 2) {
      const r = await it.next();
      if (r.done) break;
      head = Buffer.concat([head, r.value]);
    }
    async function* all(): AsyncGenerator<Buffer> {
      if (head.length) yield head;
      for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
    }
    if (head[0] !== 0x1f || head[1] !== 0x8b) {
      yield* all();
      return;
    }
    const gunzip = createGunzip({ chunkSize: 256 * 1024 });
    pipeline(Readable.from(all()), gunzip).catch(() => {}); // errors surface through gunzip
    yield* gunzip as AsyncIterable<Buffer>;
  } finally {
    file.destroy();
  }
}

async function drain(entry: AsyncIterable<Buffer>): Promise<void> {
  for await (const _ of entry) {
    // discarded
  }
}

async function readAll(entry: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of entry) chunks.push(c);
  return Buffer.concat(chunks);
}

async function hashEntry(entry: AsyncIterable<Buffer>): Promise<Expected> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const c of entry) {
    hash.update(c);
    size += c.length;
  }
  return { digest: `sha256:${hash.digest('hex')}` as Digest, size };
}

/** Translates what reading an input throws; BerthErrors (from the content store) pass through. */
function readError(err: unknown, path: string): BerthError {
  if (err instanceof BerthError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  const text = err instanceof Error ? err.message : String(err);
  if (typeof code === 'string' && code.startsWith('Z_')) {
    return new BerthError('INVALID_ARGUMENT', `${path}: corrupt gzip data (${text})`, { cause: err, hint: NOT_AN_IMAGE_HINT });
  }
  if (code === 'ENOENT') return new BerthError('NOT_FOUND', `${path}: ${text}`, { cause: err });
  if (typeof code === 'string' && code.startsWith('E')) return new BerthError('INVALID_ARGUMENT', `${path}: cannot read: ${text}`, { cause: err });
  // tar-stream's own errors: "Invalid tar header…", "Unexpected end of data".
  return new BerthError('INVALID_ARGUMENT', `${path} is not a tar archive, or a damaged or truncated one: ${text}`, { cause: err, hint: NOT_AN_IMAGE_HINT });
}
