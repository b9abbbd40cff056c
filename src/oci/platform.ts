/**
 * Platforms (os/architecture/variant): parsing, normalisation as containerd
 * does it, and matching with a preference order.
 */
import { BerthError } from '../errors.js';

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

const COMPONENT_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
/** OS names that are never an architecture, so "linux" alone is refused rather than read as an arch. */
const KNOWN_OS = new Set(['linux', 'windows', 'darwin', 'freebsd', 'netbsd', 'openbsd', 'solaris', 'illumos', 'aix', 'android', 'ios', 'plan9', 'dragonfly', 'js', 'wasip1']);

function invalidPlatform(s: string, problem: string, hint = 'a platform looks like linux/amd64, linux/arm64 or linux/arm/v7'): BerthError {
  return new BerthError('INVALID_ARGUMENT', `invalid platform ${JSON.stringify(s)}: ${problem}`, { hint, details: { platform: s } });
}

/** Parses "os/arch[/variant]" or "arch" (os defaults to linux), normalised. INVALID_ARGUMENT on bad input. */
export function parsePlatform(s: string): Platform {
  const parts = s.split('/');
  if (parts.length > 3) throw invalidPlatform(s, 'more than three "/"-separated parts');
  for (const part of parts) {
    if (!COMPONENT_RE.test(part)) {
      throw invalidPlatform(s, part === '' ? 'a part is empty' : `part ${JSON.stringify(part)} may contain only letters, digits, "_", "." and "-", and starts with a letter or digit`);
    }
  }
  const [a, b, c] = parts.map((p) => p.toLowerCase()) as [string, string?, string?];
  if (b === undefined) {
    if (KNOWN_OS.has(a)) throw invalidPlatform(s, `"${a}" is an operating system, not an architecture`, `give both, for example ${a}/amd64`);
    return normalizePlatform({ os: 'linux', architecture: a });
  }
  return normalizePlatform({ os: a, architecture: b, ...(c === undefined ? {} : { variant: c }) });
}

/** Normalises aliases: x86_64→amd64, aarch64→arm64 (variant v8 dropped, arm64 ≡ arm64/v8), armhf→arm/v7, armel→arm/v6, arm without variant→arm/v7, i386/x86→386. */
export function normalizePlatform(p: Platform): Platform {
  const os = p.os.toLowerCase();
  let architecture = p.architecture.toLowerCase();
  let variant = p.variant?.toLowerCase() || undefined;
  switch (architecture) {
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      architecture = 'amd64';
      if (variant === 'v1') variant = undefined;
      break;
    case 'aarch64':
    case 'arm64':
      architecture = 'arm64';
      if (variant === '8' || variant === 'v8' || variant === 'v8.0') variant = undefined;
      else if (variant === '9' || variant === '9.0' || variant === 'v9.0') variant = 'v9';
      break;
    case 'armhf':
      architecture = 'arm';
      variant = 'v7';
      break;
    case 'armel':
      architecture = 'arm';
      variant = 'v6';
      break;
    case 'arm':
      if (variant === undefined || variant === '7') variant = 'v7';
      else if (variant === '5' || variant === '6' || variant === '8') variant = `v${variant}`;
      break;
    case 'i386':
    case 'i686':
    case 'x86':
    case '386':
      architecture = '386';
      variant = undefined;
      break;
  }
  return { os, architecture, ...(variant === undefined ? {} : { variant }) };
}

export function formatPlatform(p: Platform): string {
  return p.variant ? `${p.os}/${p.architecture}/${p.variant}` : `${p.os}/${p.architecture}`;
}

const NODE_OS: Record<string, string> = { win32: 'windows', sunos: 'solaris' };
const NODE_ARCH: Record<string, string> = {
  x64: 'amd64',
  ia32: '386',
  mipsel: 'mipsle',
  mips64el: 'mips64le',
};

/**
 * The platform of this host (process.platform/arch mapped to OCI names) — pure given its inputs.
 * Reading `process` in the defaults is the one exception to "only the shell touches process".
 */
export function hostPlatform(nodePlatform: string = process.platform, nodeArch: string = process.arch): Platform {
  const os = NODE_OS[nodePlatform] ?? nodePlatform;
  // Node says "ppc64" for both; only AIX is big-endian among the systems Node supports.
  const architecture = nodeArch === 'ppc64' && os !== 'aix' ? 'ppc64le' : NODE_ARCH[nodeArch] ?? nodeArch;
  return normalizePlatform({ os, architecture });
}

/**
 * A matcher for a wanted platform: `match` says whether a candidate can run,
 * `rank` orders candidates (lower is better; Infinity when it does not match).
 * arm64 prefers arm64/v8 and accepts nothing else; arm/v7 accepts v7, v6, v5 in that order; amd64 accepts amd64 only.
 */
export interface PlatformMatcher {
  match(p: Platform): boolean;
  rank(p: Platform): number;
}

/**
 * For each architecture, the variants a machine of one variant can also run,
 * newest first ("" is the architecture without a variant). A machine runs its
 * own variant and every later entry: arm/v7 runs v7, v6, v5; amd64/v3 runs
 * v3, v2 and plain amd64; plain amd64 and arm64 run only themselves.
 */
const VARIANT_LADDERS: Record<string, readonly string[]> = {
  arm: ['v8', 'v7', 'v6', 'v5'],
  arm64: ['v9', ''],
  amd64: ['v4', 'v3', 'v2', ''],
};

function acceptedVariants(p: Platform): readonly string[] {
  const variant = p.variant ?? '';
  const ladder = VARIANT_LADDERS[p.architecture];
  const i = ladder?.indexOf(variant) ?? -1;
  return ladder && i >= 0 ? ladder.slice(i) : [variant];
}

export function platformMatcher(wanted: Platform): PlatformMatcher {
  const want = normalizePlatform(wanted);
  const accepted = acceptedVariants(want);
  const rank = (p: Platform): number => {
    const c = normalizePlatform(p);
    if (c.os !== want.os || c.architecture !== want.architecture) return Infinity;
    const i = accepted.indexOf(c.variant ?? '');
    return i < 0 ? Infinity : i;
  };
  return { rank, match: (p) => rank(p) !== Infinity };
}
