/**
 * Image references parsed and normalised as Docker does:
 * "busybox" → docker.io/library/busybox:latest; "host:5000/a/b:tag";
 * "name@sha256:…"; "name:tag@sha256:…" (the digest wins for fetching).
 * STUB: signatures are the contract; a helper fills in the bodies.
 */
import type { Digest } from './digest.js';

export interface Reference {
  /** Registry host as written, with port: "docker.io", "127.0.0.1:5000". */
  domain: string;
  /** Repository path without domain: "library/busybox". */
  path: string;
  tag?: string;
  digest?: Digest;
}

/** Parses and normalises; INVALID_REFERENCE with the reason and a hint on bad input. */
export declare function parseReference(s: string): Reference;
/** Canonical string: domain/path[:tag][@digest]; tag "latest" is added when neither tag nor digest was given. */
export declare function formatReference(r: Reference): string;
/** "domain/path" */
export declare function repositoryName(r: Reference): string;
/** Short form for humans: docker.io/library/ dropped. */
export declare function familiarName(r: Reference): string;
/** The host to contact for the domain: docker.io → registry-1.docker.io. */
export declare function registryHost(domain: string): string;
