/**
 * Platforms (os/architecture/variant): parsing, normalisation as containerd
 * does it, and matching with a preference order.
 * STUB: signatures are the contract; a helper fills in the bodies.
 */

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** Parses "os/arch[/variant]" or "arch" (os defaults to linux), normalised. INVALID_ARGUMENT on bad input. */
export declare function parsePlatform(s: string): Platform;
/** Normalises aliases: x86_64→amd64, aarch64→arm64 (variant v8 dropped, arm64 ≡ arm64/v8), armhf→arm/v7, armel→arm/v6, arm without variant→arm/v7, i386/x86→386. */
export declare function normalizePlatform(p: Platform): Platform;
export declare function formatPlatform(p: Platform): string;
/** The platform of this host (process.platform/arch mapped to OCI names) — pure given its inputs. */
export declare function hostPlatform(nodePlatform?: string, nodeArch?: string): Platform;
/**
 * A matcher for a wanted platform: `match` says whether a candidate can run,
 * `rank` orders candidates (lower is better; Infinity when it does not match).
 * arm64 prefers arm64/v8 and accepts nothing else; arm/v7 accepts v7, v6, v5 in that order; amd64 accepts amd64 only.
 */
export interface PlatformMatcher {
  match(p: Platform): boolean;
  rank(p: Platform): number;
}
export declare function platformMatcher(wanted: Platform): PlatformMatcher;
