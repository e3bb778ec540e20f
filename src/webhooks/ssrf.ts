/**
 * SSRF guard for webhook URLs.
 *
 * A webhook URL comes from whoever submitted the job, so it is attacker-controlled: without
 * this guard a caller could make our worker POST to the cloud metadata service, to an admin
 * port on localhost, or anywhere on the private network (OWASP SSRF Prevention Cheat Sheet).
 * The guard is deliberately a deny-by-range check on *resolved addresses*, not on host names:
 * any name can be pointed at any address, so only the address we are about to connect to
 * tells us where the request would go. {@link checkWebhookUrl} returns that address so the
 * caller connects to it and nothing else (no second resolution an attacker could rebind).
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';

/** Why a webhook URL was refused. Distinct from network failures so callers can tell "unsafe" (permanent) from "failed" (retryable). */
export class UnsafeUrlError extends Error {
  /** Exactly why, e.g. `"127.0.0.1 is a loopback address"`. Safe to show to the submitter. */
  readonly reason: string;

  constructor(reason: string) {
    // The URL itself is left out of the message on purpose: it may carry credentials or tokens.
    super(`Refused webhook URL: ${reason}`);
    this.name = 'UnsafeUrlError';
    this.reason = reason;
  }
}

/** One resolved address, as returned by `dns.lookup(host, { all: true })`. */
export interface ResolvedAddress {
  address: string;
  family: number;
}

/** How webhook URLs are vetted. Everything refused by default; `allow` is the only way around it. */
export interface SsrfPolicy {
  /**
   * Hosts, IP addresses and CIDR ranges that are let through even though they would be refused,
   * e.g. `['127.0.0.1', 'localhost', '10.0.0.0/8', '::1']`. Meant for local development and
   * tests. A host name entry matches the URL's host name exactly (case-insensitive, a trailing
   * dot ignored) and then admits whatever it resolves to; an address or CIDR entry admits that
   * resolved address whatever name led to it. Ports are not part of an entry. Only http and
   * https are ever allowed, and credentials in the URL are always refused, allow-list or not.
   * Default: `[]` (nothing bypasses the guard).
   */
  allow?: string[];
  /**
   * Resolves a host name to every address it has. Injectable so tests can simulate names that
   * resolve to several addresses, or none, without touching real DNS. It must return all
   * addresses: each one is checked. Default: `dns.lookup(hostname, { all: true })` (the
   * system resolver, so `/etc/hosts` applies, exactly as a connection would see it).
   */
  lookup?: (hostname: string) => Promise<ResolvedAddress[]>;
}

/** A URL that passed the guard, and the one address a connection to it must use. */
export interface CheckedUrl {
  url: URL;
  /** The checked address to connect to; never resolve the host name again. */
  address: string;
  family: 4 | 6;
}

interface Rule {
  /** Completes "<ip> is …". */
  label: string;
  list: BlockList;
}

function rule(label: string, family: 'ipv4' | 'ipv6', ...cidrs: string[]): Rule {
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [network = '', prefix] = cidr.split('/');
    if (prefix === undefined) list.addAddress(network, family);
    else list.addSubnet(network, Number(prefix), family);
  }
  return { label, list };
}

// Order matters: the first match names the reason, so specific entries (metadata, the
// unspecified address, broadcast) come before the ranges that contain them.
const IPV4_RULES: readonly Rule[] = [
  rule('an unspecified address', 'ipv4', '0.0.0.0'),
  rule('in "this network" (0.0.0.0/8)', 'ipv4', '0.0.0.0/8'),
  rule('a loopback address', 'ipv4', '127.0.0.0/8'),
  // AWS/GCP/Azure/OCI instance metadata, AWS ECS task metadata, AWS DNS, Alibaba Cloud metadata.
  rule('a cloud metadata address', 'ipv4', '169.254.169.254', '169.254.170.2', '169.254.169.253', '100.100.100.200'),
  rule('a link-local address', 'ipv4', '169.254.0.0/16'),
  rule('a private address', 'ipv4', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16'),
  rule('a carrier-grade NAT (shared) address', 'ipv4', '100.64.0.0/10'),
  rule('an IETF protocol assignment (192.0.0.0/24)', 'ipv4', '192.0.0.0/24'),
  rule('a documentation address', 'ipv4', '192.0.2.0/24', '198.51.100.0/24', '203.0.113.0/24'),
  rule('a deprecated 6to4 relay address', 'ipv4', '192.88.99.0/24'),
  rule('a benchmarking address', 'ipv4', '198.18.0.0/15'),
  rule('a multicast address', 'ipv4', '224.0.0.0/4'),
  rule('the broadcast address', 'ipv4', '255.255.255.255'),
  rule('a reserved address (240.0.0.0/4)', 'ipv4', '240.0.0.0/4'),
];

// IPv6 forms that embed an IPv4 address (mapped, NAT64, 6to4) are judged by that IPv4 address
// before these rules run, so a private IPv4 cannot hide inside an innocent-looking IPv6.
const IPV6_RULES: readonly Rule[] = [
  rule('an unspecified address', 'ipv6', '::'),
  rule('a loopback address', 'ipv6', '::1'),
  rule('a cloud metadata address', 'ipv6', 'fd00:ec2::254'),
  rule('a deprecated IPv4-compatible address', 'ipv6', '::/96'),
  rule('an IPv4-translated address', 'ipv6', '::ffff:0:0:0/96'),
  rule('a local-use NAT64 address', 'ipv6', '64:ff9b:1::/48'),
  rule('a discard-only address', 'ipv6', '100::/64'),
  rule('a Teredo tunnelling address', 'ipv6', '2001::/32'),
  rule('a documentation address', 'ipv6', '2001:db8::/32', '3fff::/20'),
  rule('an IETF protocol assignment (2001::/23)', 'ipv6', '2001::/23'),
  rule('a unique-local address', 'ipv6', 'fc00::/7'),
  rule('a link-local address', 'ipv6', 'fe80::/10'),
  rule('a deprecated site-local address', 'ipv6', 'fec0::/10'),
  rule('a multicast address', 'ipv6', 'ff00::/8'),
];

// Everything routable on the IPv6 internet is inside 2000::/3; anything else not caught above
// has no business being a webhook destination.
const IPV6_GLOBAL_UNICAST = rule('', 'ipv6', '2000::/3').list;

/** Strips `[…]` from a URL host and a `%zone` suffix, which `BlockList` does not understand. */
function bareAddress(ip: string): string {
  const unbracketed = ip.startsWith('[') && ip.endsWith(']') ? ip.slice(1, -1) : ip;
  const zone = unbracketed.indexOf('%');
  return zone === -1 ? unbracketed : unbracketed.slice(0, zone);
}

/** The eight 16-bit groups of an address that `isIP` already accepted as IPv6 (a dotted-quad tail included). */
function ipv6Groups(ip: string): number[] {
  let text = ip;
  const tail: number[] = [];
  const lastColon = text.lastIndexOf(':');
  const last = text.slice(lastColon + 1);
  if (last.includes('.')) {
    const [a = 0, b = 0, c = 0, d = 0] = last.split('.').map(Number);
    tail.push((a << 8) | b, (c << 8) | d);
    // Keep a '::' that precedes the dotted quad; drop a lone separator colon.
    text = text.endsWith('::' + last) ? text.slice(0, lastColon + 1) : text.slice(0, lastColon);
  }
  const parse = (part: string): number[] => (part === '' ? [] : part.split(':').map((group) => parseInt(group, 16)));
  const [head = '', rest] = text.split('::');
  const left = parse(head);
  const right = rest === undefined ? [] : parse(rest);
  const zeros = Array<number>(Math.max(0, 8 - left.length - right.length - tail.length)).fill(0);
  return [...left, ...zeros, ...right, ...tail];
}

function ipv4FromGroups(high: number, low: number): string {
  return [high >> 8, high & 0xff, low >> 8, low & 0xff].join('.');
}

/** The IPv4 address embedded in an IPv4-mapped, NAT64 or 6to4 IPv6 address, and what to call that form. */
function embeddedIpv4(ip: string): { ipv4: string; form: string } | undefined {
  const g = ipv6Groups(ip);
  const [g0, g1, g2, g3, g4, g5, g6 = 0, g7 = 0] = g;
  if (g0 === 0 && g1 === 0 && g2 === 0 && g3 === 0 && g4 === 0 && g5 === 0xffff) return { ipv4: ipv4FromGroups(g6, g7), form: 'IPv4-mapped' };
  if (g0 === 0x64 && g1 === 0xff9b && g2 === 0 && g3 === 0 && g4 === 0 && g5 === 0) return { ipv4: ipv4FromGroups(g6, g7), form: 'NAT64 for' };
  if (g0 === 0x2002) return { ipv4: ipv4FromGroups(g1 ?? 0, g2 ?? 0), form: '6to4 for' };
  return undefined;
}

function firstMatch(rules: readonly Rule[], ip: string, family: 'ipv4' | 'ipv6'): string | undefined {
  return rules.find((r) => r.list.check(ip, family))?.label;
}

/**
 * Why a webhook may not be sent to `ip`, or `undefined` when it may.
 *
 * Refuses loopback, private, link-local, CGNAT, multicast, unspecified, broadcast, reserved,
 * documentation and benchmarking ranges, IPv6 unique-local, site-local and anything outside
 * 2000::/3, and cloud metadata endpoints. IPv6 addresses that carry an IPv4 address
 * (`::ffff:a.b.c.d`, `64:ff9b::/96`, `2002::/16`) are judged by that IPv4 address.
 *
 * @param ip an IPv4 or IPv6 address; brackets and a `%zone` suffix are tolerated.
 * @returns e.g. `"127.0.0.1 is a loopback address"`.
 */
export function isForbiddenAddress(ip: string): string | undefined {
  const bare = bareAddress(ip.trim());
  const version = isIP(bare);
  if (version === 0) return `${ip} is not an IP address`;
  if (version === 4) {
    const label = firstMatch(IPV4_RULES, bare, 'ipv4');
    return label === undefined ? undefined : `${bare} is ${label}`;
  }
  const embedded = embeddedIpv4(bare);
  if (embedded !== undefined) {
    const label = firstMatch(IPV4_RULES, embedded.ipv4, 'ipv4');
    return label === undefined ? undefined : `${bare} is ${embedded.form} ${embedded.ipv4}, ${label}`;
  }
  const label = firstMatch(IPV6_RULES, bare, 'ipv6');
  if (label !== undefined) return `${bare} is ${label}`;
  if (!IPV6_GLOBAL_UNICAST.check(bare, 'ipv6')) return `${bare} is not a global unicast address`;
  return undefined;
}

interface CompiledAllowList {
  hosts: Set<string>;
  addresses: BlockList;
}

function normalizeHost(host: string): string {
  return host.toLowerCase().replace(/\.$/, '');
}

function compileAllowList(entries: readonly string[]): CompiledAllowList {
  const hosts = new Set<string>();
  const addresses = new BlockList();
  for (const raw of entries) {
    const entry = raw.trim();
    const slash = entry.indexOf('/');
    if (slash !== -1) {
      const network = bareAddress(entry.slice(0, slash));
      const prefixText = entry.slice(slash + 1);
      const version = isIP(network);
      const prefix = Number(prefixText);
      if (version === 0 || !/^\d+$/.test(prefixText) || prefix > (version === 4 ? 32 : 128)) {
        // A typo here would silently widen or narrow the guard, so it is a configuration error.
        throw new TypeError(`ssrf allow-list entry ${JSON.stringify(raw)} is not a valid CIDR range`);
      }
      addresses.addSubnet(network, prefix, version === 4 ? 'ipv4' : 'ipv6');
      continue;
    }
    const address = bareAddress(entry);
    const version = isIP(address);
    if (version !== 0) addresses.addAddress(address, version === 4 ? 'ipv4' : 'ipv6');
    else if (entry !== '') hosts.add(normalizeHost(entry));
  }
  return { hosts, addresses };
}

function isAllowedAddress(allow: CompiledAllowList, address: string, family: 4 | 6): boolean {
  // BlockList also matches IPv4-mapped IPv6 against IPv4 entries, so allowing 127.0.0.1 admits ::ffff:127.0.0.1 too.
  return allow.addresses.check(bareAddress(address), family === 4 ? 'ipv4' : 'ipv6');
}

const defaultLookup = (hostname: string): Promise<ResolvedAddress[]> => dnsLookup(hostname, { all: true });

/** DNS answers that mean "this name has no address", as opposed to "DNS is failing right now". */
const NOT_FOUND_CODES = new Set(['ENOTFOUND', 'ENODATA', 'EAI_NONAME', 'EAI_NODATA']);

/**
 * Vets a webhook URL and returns the address to connect to.
 *
 * Only `http:` and `https:` are accepted, with no user name or password. An IP-literal host
 * (IPv6 in brackets included, and the odd IPv4 spellings that URL parsing normalizes, like
 * `http://2130706433/`) is checked as is; a host name is resolved and *every* address it
 * resolves to must pass, so a name that resolves to one public and one private address is
 * refused (otherwise the connection could land on the private one).
 *
 * @throws {UnsafeUrlError} when the URL is refused, including when the host does not resolve.
 * @throws the resolver's error when DNS fails transiently (e.g. `EAI_AGAIN`): that is a failure
 *   worth retrying, not a verdict on the URL.
 */
export async function checkWebhookUrl(url: string, policy: SsrfPolicy = {}): Promise<CheckedUrl> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UnsafeUrlError('not a valid URL');
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new UnsafeUrlError('only http and https URLs are allowed');
  // Credentials in a callback URL would be sent to (and logged by) whoever receives it, and
  // they are a classic way to disguise the real host (`http://trusted.com@evil/`).
  if (parsed.username !== '' || parsed.password !== '') throw new UnsafeUrlError('credentials in the URL are not allowed');

  const allow = compileAllowList(policy.allow ?? []);
  const host = bareAddress(parsed.hostname);
  const literal = isIP(host);

  if (literal !== 0) {
    const family = literal === 4 ? 4 : 6;
    if (!isAllowedAddress(allow, host, family)) {
      const reason = isForbiddenAddress(host);
      if (reason !== undefined) throw new UnsafeUrlError(reason);
    }
    return { url: parsed, address: host, family };
  }

  let resolved: ResolvedAddress[];
  try {
    resolved = await (policy.lookup ?? defaultLookup)(host);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException | undefined)?.code;
    if (code !== undefined && NOT_FOUND_CODES.has(code)) throw new UnsafeUrlError(`${host} did not resolve`);
    throw error;
  }
  const first = resolved[0];
  if (first === undefined) throw new UnsafeUrlError(`${host} did not resolve`);

  const hostAllowed = allow.hosts.has(normalizeHost(host));
  for (const { address, family } of resolved) {
    const fam = family === 6 ? 6 : 4;
    if (hostAllowed || isAllowedAddress(allow, address, fam)) continue;
    const reason = isForbiddenAddress(address);
    if (reason !== undefined) throw new UnsafeUrlError(`${host} resolves to ${reason}`);
  }
  return { url: parsed, address: bareAddress(first.address), family: first.family === 6 ? 6 : 4 };
}
