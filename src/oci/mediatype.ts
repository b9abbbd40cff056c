/** Media types of the OCI image spec and Docker's schema2, and their roles. */

export const MediaType = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  ociLayerNondistributable: 'application/vnd.oci.image.layer.nondistributable.v1.tar',
  ociLayerNondistributableGzip: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerLayerForeignGzip: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  dockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  dockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
} as const;

/** The Accept list sent when resolving a reference, most preferred first. */
export const ManifestAccept: readonly string[] = [
  MediaType.ociIndex,
  MediaType.ociManifest,
  MediaType.dockerManifestList,
  MediaType.dockerManifest,
];

export function isIndex(mt: string): boolean {
  return mt === MediaType.ociIndex || mt === MediaType.dockerManifestList;
}

export function isManifest(mt: string): boolean {
  return mt === MediaType.ociManifest || mt === MediaType.dockerManifest;
}

export function isSchema1(mt: string): boolean {
  return mt === MediaType.dockerSchema1 || mt === MediaType.dockerSchema1Signed;
}

export function isConfig(mt: string): boolean {
  return mt === MediaType.ociConfig || mt === MediaType.dockerConfig;
}

export type LayerCompression = 'none' | 'gzip' | 'zstd';

/** The compression of a layer media type, or undefined if it is not a layer type berth knows. */
export function layerCompression(mt: string): LayerCompression | undefined {
  switch (mt) {
    case MediaType.ociLayer:
    case MediaType.ociLayerNondistributable:
    case MediaType.dockerLayer:
      return 'none';
    case MediaType.ociLayerGzip:
    case MediaType.ociLayerNondistributableGzip:
    case MediaType.dockerLayerGzip:
    case MediaType.dockerLayerForeignGzip:
      return 'gzip';
    case MediaType.ociLayerZstd:
      return 'zstd';
    default:
      return undefined;
  }
}
