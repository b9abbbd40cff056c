import type { Readable, Writable } from 'node:stream';
import type { Digest } from '../oci/digest.js';

/**
 * The content store interface: immutable blobs addressed by digest, written
 * through ingests. An ingest is named by a caller-chosen ref (e.g. the
 * digest being pulled); its partial data survives a crash or a SIGKILL and is
 * resumed by the next writer of the same ref. A blob becomes visible only on
 * commit, after its size and digest were verified and it was synced to disk;
 * no partial or unverified blob is ever visible under blobs/.
 */

export interface BlobInfo {
  digest: Digest;
  size: number;
  /** Commit time, from the blob file's mtime. */
  committedAt: Date;
}

export interface IngestStatus {
  ref: string;
  /** Bytes present in the ingest. */
  offset: number;
  expected?: { digest: Digest; size?: number };
  updatedAt: Date;
}

export interface Expected {
  digest: Digest;
  /** When given, commit fails with SIZE_MISMATCH unless exactly this many bytes were written. */
  size?: number | undefined;
}

export interface ContentWriter {
  readonly ref: string;
  /** Bytes already in the ingest (from an earlier, interrupted writer); new data appends here. */
  readonly offset: number;
  /**
   * A single-use Writable that appends to the ingest and hashes what it
   * writes. End it (pipeline) before commit. Fails with SIZE_MISMATCH as soon
   * as more than expected.size bytes arrive.
   */
  stream(): Writable;
  /** Drops the partial data and restarts at offset 0 (server ignored a Range request). */
  truncate(): Promise<void>;
  /**
   * Verifies size and digest, fsyncs the file, renames it into blobs/ and
   * fsyncs the directory. A blob that already exists counts as committed.
   * On mismatch the ingest is discarded (its bytes are known bad) and the
   * error (DIGEST_MISMATCH or SIZE_MISMATCH) names expected and found.
   * Releases the ref.
   */
  commit(): Promise<BlobInfo>;
  /** Releases the ref, keeping the partial data for a later resume. */
  close(): Promise<void>;
  /** Releases the ref and deletes the partial data. */
  abort(): Promise<void>;
}

export interface ContentStore {
  info(digest: Digest): Promise<BlobInfo | undefined>;
  /** NOT_FOUND when absent. `start` skips that many bytes. */
  reader(digest: Digest, opts?: { start?: number }): Promise<Readable>;
  /** Whole blob in memory; TOO_LARGE above `max`. For manifests and configs only. */
  readBytes(digest: Digest, max: number): Promise<Buffer>;
  /**
   * Opens (or resumes) the ingest `ref`. Writers of the same ref are
   * serialised: a second writer waits until the first commits, closes or
   * aborts (in-process and across processes), up to `timeoutMs`, then fails
   * with LOCKED. If the blob is already committed, commit() on the returned
   * writer succeeds without data.
   */
  writer(ref: string, expected: Expected, opts?: { timeoutMs?: number }): Promise<ContentWriter>;
  /** Streams, verifies and commits a whole blob from bytes or a stream (no resume). */
  put(expected: Expected, data: Uint8Array | Readable, ref?: string): Promise<BlobInfo>;
  list(): AsyncIterable<BlobInfo>;
  /**
   * NOT_FOUND when absent. With `unless` (a collector that runs beside
   * writers): the blob is first moved aside, so info() and readers no longer
   * find it and a writer of it stores it anew; then it is deleted, or put
   * back when `unless()` (asked only now) says it is wanted after all.
   * Resolves true when it was deleted.
   */
  delete(digest: Digest, opts?: { unless?: () => Promise<boolean> }): Promise<boolean>;
  ingests(): Promise<IngestStatus[]>;
  abortIngest(ref: string): Promise<void>;
  /**
   * Streams ingest `ref` from offset 0 as its writer appends, waiting at the
   * end for more, until `size` bytes were read or `signal` aborts. For using
   * a blob while it downloads (unpacking): the bytes are NOT verified, so
   * whatever the caller makes of them must not be trusted until the writer's
   * commit succeeded. The stream keeps reading the same file after it was
   * committed (renamed). Undefined when the ingest does not exist.
   */
  followIngest(ref: string, size: number, signal: AbortSignal): Promise<Readable | undefined>;
  /** Re-hashes a stored blob: true when its bytes match its name. */
  verify(digest: Digest): Promise<boolean>;
}
