/**
 * Per-request edge helpers: request ids, the client address behind trusted proxies, and the
 * size checks Bun does not make itself.
 * @module
 */
import { BlockList, isIPv4, isIPv6 } from "node:net";

/** Longest request target accepted (path + query), characters. Longer → 414. */
export const MAX_TARGET = 4096;

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Request ids: the caller's `X-Request-Id` if well formed, else `<process prefix>-<counter>`
 * (12 random hex digits, then a decimal counter: `toString(36)` cost about 0.3 µs a request).
 */
export function requestIds(): (req: Request) => string {
  const prefix = `${Array.from(crypto.getRandomValues(new Uint8Array(6)), (b) => b.toString(16).padStart(2, "0")).join("")}-`;
  let counter = 0;
  return (req) => {
    const given = req.headers.get("x-request-id");
    if (given !== null && REQUEST_ID.test(given)) return given;
    counter = counter + 1 < Number.MAX_SAFE_INTEGER ? counter + 1 : 1;
    return prefix + counter;
  };
}

/** Parses `ADDR/BITS` (or a bare address) into a BlockList entry; throws on bad input. */
export function parseCidr(value: string): { address: string; prefix: number; family: "ipv4" | "ipv6" } {
  const [address = "", bits] = value.split("/");
  const family = isIPv4(address) ? "ipv4" : isIPv6(address) ? "ipv6" : null;
  if (family === null) throw new Error(`${JSON.stringify(value)} is not an IP address or CIDR block`);
  const max = family === "ipv4" ? 32 : 128;
  const prefix = bits === undefined ? max : Number(bits);
  if (!/^\d{1,3}$/.test(bits ?? String(max)) || prefix > max) {
    throw new Error(`${JSON.stringify(value)} has an invalid prefix length`);
  }
  return { address, prefix, family };
}

/**
 * The client address: the socket's peer, unless that peer is a trusted proxy, in which case the
 * right-most `X-Forwarded-For` entry that is not itself a trusted proxy.
 */
export function clientAddress(trusted: readonly string[]): (req: Request, peer: string | null) => string {
  if (trusted.length === 0) return (_req, peer) => peer ?? "unknown";
  const list = new BlockList();
  for (const cidr of trusted) {
    const { address, prefix, family } = parseCidr(cidr);
    list.addSubnet(address, prefix, family);
  }
  const isTrusted = (ip: string): boolean => {
    const bare = ip.startsWith("::ffff:") && isIPv4(ip.slice(7)) ? ip.slice(7) : ip;
    if (isIPv4(bare)) return list.check(bare, "ipv4");
    if (isIPv6(bare)) return list.check(bare, "ipv6");
    return false;
  };
  return (req, peer) => {
    if (peer === null || !isTrusted(peer)) return peer ?? "unknown";
    const forwarded = req.headers.get("x-forwarded-for");
    if (forwarded === null) return peer;
    const hops = forwarded.split(",").map((h) => h.trim());
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = hops[i] ?? "";
      if (!isIPv4(hop) && !isIPv6(hop)) return peer; // malformed chain: trust nothing in it
      if (!isTrusted(hop)) return hop;
    }
    return peer;
  };
}

/** Whether a GET request carries a body (it must not). */
export function hasBody(req: Request): boolean {
  const length = req.headers.get("content-length");
  return (length !== null && length !== "0") || req.headers.has("transfer-encoding");
}

/** Whether an address is loopback (127.0.0.0/8, ::1, localhost). */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}
