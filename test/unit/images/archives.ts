/**
 * Generators for the files `berth image import` reads, built from fixture
 * images: OCI image layouts (as a directory or a tar, optionally gzip'd) and
 * `docker save` archives in the classic layout (manifest.json,
 * <config-hex>.json, <layer-id>/layer.tar, <layer-id>/json, <layer-id>/VERSION,
 * repositories; layers first and manifest.json last, the order Docker writes)
 * or Docker 25's blobs/sha256 layout. Options make them wrong in the ways the
 * import tests need.
 */
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { MediaType, sha256, type Digest } from '../../../src/oci/index.js';
import { makeTar, type FileEntry, type FixtureBlob, type FixtureImage, type FixtureIndex } from '../../fixtures/images.js';

export interface ArchiveFile {
  name: string;
  data?: Buffer;
  /** A symlink (to `linkname`) instead of a file. */
  linkname?: string;
}

export type LayoutImage = FixtureImage | FixtureIndex;

function isIndex(img: LayoutImage): img is FixtureIndex {
  return 'images' in img;
}

/** Every blob of a fixture image or index, each once: [digest, bytes]. */
export function fixtureBlobs(img: LayoutImage): Map<Digest, Buffer> {
  const out = new Map<Digest, Buffer>();
  const add = (i: FixtureImage): void => {
    out.set(i.digest, i.manifest);
    out.set(i.config.digest, i.config.data);
    for (const l of i.layers) out.set(l.digest, l.data);
  };
  if (isIndex(img)) {
    out.set(img.digest, img.index);
    img.images.forEach(add);
  } else add(img);
  return out;
}

export function blobName(d: Digest): string {
  return `blobs/${d.replace(':', '/')}`;
}

export interface LayoutOptions {
  /** org.opencontainers.image.ref.name on the index.json entry. */
  refName?: string;
  /** io.containerd.image.name on the index.json entry. */
  imageName?: string;
  /** More index.json entries, after the image's. */
  extraEntries?: object[];
  /** Blobs left out. */
  omit?: Digest[];
  /** Blobs whose file holds other bytes than their name says. */
  corrupt?: Digest[];
  /** More blobs to store (for images made by hand). */
  extraBlobs?: Array<{ digest: Digest; data: Buffer }>;
  layoutVersion?: string;
  /** Leave out the oci-layout file. */
  noLayoutFile?: boolean;
  /** Where oci-layout and index.json go: before the blobs (berth, skopeo) or after (containerd). */
  documentsLast?: boolean;
}

export function layoutFiles(img: LayoutImage, opts: LayoutOptions = {}): ArchiveFile[] {
  const annotations = {
    ...(opts.refName ? { 'org.opencontainers.image.ref.name': opts.refName } : {}),
    ...(opts.imageName ? { 'io.containerd.image.name': opts.imageName } : {}),
  };
  const entry = {
    mediaType: img.mediaType,
    digest: img.digest,
    size: img.size,
    ...(Object.keys(annotations).length ? { annotations } : {}),
  };
  const index = { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [entry, ...(opts.extraEntries ?? [])] };
  const docs: ArchiveFile[] = [
    ...(opts.noLayoutFile ? [] : [{ name: 'oci-layout', data: Buffer.from(JSON.stringify({ imageLayoutVersion: opts.layoutVersion ?? '1.0.0' })) }]),
    { name: 'index.json', data: Buffer.from(JSON.stringify(index)) },
  ];
  const blobs = new Map(fixtureBlobs(img));
  for (const b of opts.extraBlobs ?? []) blobs.set(b.digest, b.data);
  const blobFiles: ArchiveFile[] = [];
  for (const [digest, data] of blobs) {
    if (opts.omit?.includes(digest)) continue;
    const bytes = opts.corrupt?.includes(digest) ? Buffer.concat([data.subarray(0, data.length - 1), Buffer.from([data[data.length - 1]! ^ 0xff])]) : data;
    blobFiles.push({ name: blobName(digest), data: bytes });
  }
  return opts.documentsLast ? [...blobFiles, ...docs] : [...docs, ...blobFiles];
}

/** An uncompressed docker save of images made with compression: 'none' (their layer blobs are the layer tars). */
export interface DockerSaveImage {
  image: FixtureImage;
  repoTags: string[] | null;
}

export interface DockerSaveOptions {
  /** Docker 25's paths: configs and layers under blobs/sha256/<hex>, no <id>/ directories (without its index.json, so read as docker save). */
  modern?: boolean;
  /** A layer shared with an earlier image is a symlink to the first copy, as Docker writes it. */
  linkSharedLayers?: boolean;
  /** Change manifest.json's entries before writing. */
  editManifest?: (entries: Array<{ Config: string; RepoTags: string[] | null; Layers: string[] }>) => void;
  /** Bytes to write instead of a layer's (by layer digest). */
  replaceLayer?: Map<Digest, Buffer>;
}

export function dockerSaveFiles(images: DockerSaveImage[], opts: DockerSaveOptions = {}): ArchiveFile[] {
  const files: ArchiveFile[] = [];
  const written = new Map<Digest, string>();
  const manifest: Array<{ Config: string; RepoTags: string[] | null; Layers: string[] }> = [];
  const repositories: Record<string, Record<string, string>> = {};
  for (const { image, repoTags } of images) {
    const layerPaths: string[] = [];
    let parent = '';
    for (const [i, layer] of image.layers.entries()) {
      if (layer.digest !== image.diffIds[i]) throw new Error('dockerSaveFiles needs uncompressed layers (compression: none)');
      // Docker's v1 layer IDs chain the parent's; any stable hex works for the loader.
      const id = sha256(`${parent} ${layer.digest}`).slice(7);
      const path = opts.modern ? blobName(layer.digest) : `${id}/layer.tar`;
      layerPaths.push(path);
      const data = opts.replaceLayer?.get(layer.digest) ?? layer.data;
      const first = written.get(layer.digest);
      if (!opts.modern) {
        files.push({ name: `${id}/VERSION`, data: Buffer.from('1.0') });
        files.push({ name: `${id}/json`, data: Buffer.from(JSON.stringify({ id, ...(parent ? { parent } : {}), created: '2024-01-01T00:00:00Z' })) });
      }
      if (first && opts.linkSharedLayers && !opts.modern) files.push({ name: path, linkname: `../${first.split('/')[0]}/layer.tar` });
      else if (!first || !opts.modern) files.push({ name: path, data });
      if (!first) written.set(layer.digest, path);
      parent = id;
    }
    const configPath = opts.modern ? blobName(image.config.digest) : `${image.config.digest.slice(7)}.json`;
    files.push({ name: configPath, data: image.config.data });
    manifest.push({ Config: configPath, RepoTags: repoTags, Layers: layerPaths });
    for (const t of repoTags ?? []) {
      const [repo, tag] = t.split(/:(?=[^:/]+$)/);
      (repositories[repo!] ??= {})[tag ?? 'latest'] = parent;
    }
  }
  opts.editManifest?.(manifest);
  if (!opts.modern) files.push({ name: 'repositories', data: Buffer.from(JSON.stringify(repositories)) });
  files.push({ name: 'manifest.json', data: Buffer.from(JSON.stringify(manifest)) });
  return files;
}

/** A tar of the files, with the parent directories a real tool would write; gzip'd when asked. */
export async function tarOf(files: ArchiveFile[], opts: { gzip?: boolean } = {}): Promise<Buffer> {
  const entries: FileEntry[] = [];
  const dirs = new Set<string>();
  for (const f of files) {
    const parts = f.name.split('/');
    for (let i = 1; i < parts.length; i++) {
      const d = parts.slice(0, i).join('/');
      if (!dirs.has(d)) {
        dirs.add(d);
        entries.push({ path: d, type: 'dir' });
      }
    }
    entries.push(f.linkname !== undefined ? { path: f.name, type: 'symlink', linkname: f.linkname } : { path: f.name, content: f.data ?? Buffer.alloc(0) });
  }
  const tar = await makeTar(entries);
  return opts.gzip ? gzipSync(tar) : tar;
}

export async function writeDir(dir: string, files: ArchiveFile[]): Promise<void> {
  for (const f of files) {
    const p = join(dir, f.name);
    await mkdir(dirname(p), { recursive: true });
    if (f.linkname !== undefined) await symlink(f.linkname, p);
    else await writeFile(p, f.data ?? Buffer.alloc(0));
  }
}

/** A manifest + config made by hand around existing layer blobs, for images that are wrong on purpose. */
export function handmadeImage(opts: {
  layers: FixtureBlob[];
  diffIds: Digest[];
  layerMediaType?: string;
  configMediaType?: string;
  platform?: { os: string; architecture: string };
}): FixtureImage {
  const platform = opts.platform ?? { os: 'linux', architecture: 'amd64' };
  const configData = Buffer.from(JSON.stringify({ ...platform, rootfs: { type: 'layers', diff_ids: opts.diffIds }, config: {} }));
  const config: FixtureBlob = { mediaType: opts.configMediaType ?? MediaType.ociConfig, digest: sha256(configData), size: configData.length, data: configData };
  const layers = opts.layers.map((l) => ({ ...l, mediaType: opts.layerMediaType ?? l.mediaType }));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: { mediaType: config.mediaType, digest: config.digest, size: config.size },
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
  }));
  return { mediaType: MediaType.ociManifest, manifest, digest: sha256(manifest), size: manifest.length, config, layers, diffIds: opts.diffIds, platform };
}
