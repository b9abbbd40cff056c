import type { Readable } from 'node:stream';
import type { Descriptor } from '../oci/descriptor.js';
import type { Reference } from '../oci/reference.js';

/**
 * The registry client interface, after containerd's remotes.Resolver and
 * Fetcher. A Resolver turns a reference into the descriptor of its manifest
 * or index; a Fetcher reads what descriptors point at. Implementations speak
 * the OCI distribution spec; callers never see HTTP.
 *
 * Errors are BerthErrors that name the host, the reference and, where it
 * matters, the digest expected and found: UNAVAILABLE (unreachable, reset,
 * 5xx after retries), RATE_LIMITED (429 after retries), UNAUTHORIZED (401),
 * FORBIDDEN (403), NOT_FOUND (manifest or blob unknown), DIGEST_MISMATCH,
 * SIZE_MISMATCH, TRUNCATED, TOO_LARGE, UNSUPPORTED (schema1).
 * No error, log line or event carries a credential.
 */

export interface Resolved {
  /** The canonical reference that was resolved. */
  name: string;
  /** Host that answered (after mirror selection), for messages. */
  host: string;
  descriptor: Descriptor;
}

/**
 * An open blob body. Read it either with `readInto`, into buffers the caller
 * reuses (no allocation or copy per chunk: the fast path for big layers), or
 * as `stream`; not both. A caller that stops before the end calls `cancel`.
 */
export interface BlobBody {
  /** The offset the body starts at: the requested one, or 0 when the server ignored Range. */
  offset: number;
  /**
   * Reads the next bytes into `buf`, filling it unless the body ends first;
   * resolves to the count, 0 at the end. `buf` is written only until the
   * promise settles, so the caller may reuse it afterwards.
   */
  readInto(buf: Uint8Array): Promise<number>;
  /** The body as a stream of fresh chunks. */
  readonly stream: Readable;
  /** Stops reading and closes the connection (nothing when the body was read to its end). */
  cancel(): void;
}

export interface Fetcher {
  /**
   * Fetches a manifest or index by descriptor, at most MAX_MANIFEST_BYTES,
   * and verifies size and digest before returning the bytes.
   */
  fetchManifest(desc: Descriptor, signal?: AbortSignal): Promise<Buffer>;
  /**
   * Opens a blob, from `offset` when > 0 (Range request). The body is the
   * raw bytes (no transparent decompression) and is NOT verified here: the
   * caller verifies through the content store. A body that breaks mid-way
   * fails its reads (or errors its stream) with UNAVAILABLE or TRUNCATED;
   * the caller may reopen from the bytes it has.
   */
  fetchBlob(desc: Descriptor, opts?: { offset?: number; signal?: AbortSignal }): Promise<BlobBody>;
}

export interface Resolver {
  resolve(ref: Reference, signal?: AbortSignal): Promise<Resolved>;
  fetcher(ref: Reference): Fetcher;
}
