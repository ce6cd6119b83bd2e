/**
 * XML and URI escaping for the VAST documents (pure).
 *
 * - `escapeText` / `escapeAttr`: character data and double-quoted attribute values. Characters
 *   XML 1.0 cannot carry at all (C0 controls other than tab, LF and CR; lone surrogates;
 *   U+FFFE, U+FFFF) become U+FFFD.
 * - `toAnyUri`: makes a string a valid RFC 3986 URI reference, which is what the VAST schema's
 *   `xs:anyURI` elements (Impression, MediaFile, Error) accept under libxml2: characters outside
 *   RFC 3986 (space, `<>"{}|\^`, non-ASCII, controls) are percent-encoded as UTF-8, a `%` that
 *   does not start an escape becomes `%25`, a second `#` becomes `%23`, and `[`/`]` survive only
 *   around an IP literal host. A URL that was already valid (the usual case) is returned as is.
 * - `cdata`: a CDATA section; a `]]>` inside is split across two sections.
 * @module
 */

const INVALID_XML =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: these are the characters XML 1.0 forbids
  /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
const TEXT_SPECIAL = /[&<>]/;
const ATTR_SPECIAL = /[&<>"]/;

/** Printable ASCII needs no look at the XML 1.0 character ranges. */
const NOT_PRINTABLE_ASCII = /[^\x20-\x7E]/;

function replaceInvalid(value: string): string {
  if (!NOT_PRINTABLE_ASCII.test(value)) return value;
  INVALID_XML.lastIndex = 0;
  return INVALID_XML.test(value) ? value.replace(INVALID_XML, "\uFFFD") : value;
}

/** Character data: `&`, `<`, `>` escaped; characters XML cannot carry replaced by U+FFFD. */
export function escapeText(value: string): string {
  const clean = replaceInvalid(value);
  if (!TEXT_SPECIAL.test(clean)) return clean;
  return clean.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

/** A double-quoted attribute value: as `escapeText`, plus `"`, and tab/CR/LF as references. */
export function escapeAttr(value: string): string {
  let clean = replaceInvalid(value);
  if (ATTR_SPECIAL.test(clean)) {
    clean = clean
      .replaceAll("&", "&amp;")
      .replaceAll("<", "&lt;")
      .replaceAll(">", "&gt;")
      .replaceAll('"', "&quot;");
  }
  // Attribute-value normalization would turn these into spaces; references keep them.
  return /[\t\n\r]/.test(clean)
    ? clean.replaceAll("\t", "&#9;").replaceAll("\n", "&#10;").replaceAll("\r", "&#13;")
    : clean;
}

/** A CDATA section holding `value` verbatim (after `toAnyUri` or `replaceInvalid`). */
export function cdata(value: string): string {
  const clean = replaceInvalid(value);
  return clean.includes("]]>")
    ? `<![CDATA[${clean.replaceAll("]]>", "]]]]><![CDATA[>")}]]>`
    : `<![CDATA[${clean}]]>`;
}

/** The usual catalog and impression URL: http(s), a plain host, an optional port, plain characters. */
const PLAIN_URL = /^https?:\/\/[A-Za-z0-9.-]+(?::[0-9]+)?(?:[/?][A-Za-z0-9\-._~!$&'()*+,;=:/?@]*)?$/;
const SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:/;
const HEX2 = /^[0-9A-Fa-f]{2}$/;
/** RFC 3986 `pchar` plus `/` and `?` (path, query and fragment), one ASCII character. */
const PART_CHAR = /^[A-Za-z0-9\-._~!$&'()*+,;=:@/?]$/;
/** `userinfo`: unreserved, sub-delims and `:`. */
const USERINFO_CHAR = /^[A-Za-z0-9\-._~!$&'()*+,;=:]$/;
/** `reg-name`: unreserved and sub-delims. */
const REGNAME_CHAR = /^[A-Za-z0-9\-._~!$&'()*+,;=]$/;
/** An IP literal host with an optional port. */
const IP_LITERAL = /^(\[[0-9A-Za-z:._~!$&'()*+,;=-]+\])(?::([0-9]*))?$/;
const PORT = /:([0-9]*)$/;

const utf8 = new TextEncoder();

function percentEncode(char: string): string {
  let out = "";
  for (const byte of utf8.encode(char)) out += `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  return out;
}

/**
 * Percent-encodes what `allowed` refuses. A valid `%XX` escape is kept, any other `%` becomes
 * `%25`; a lone surrogate becomes U+FFFD. `hook` may claim a character first.
 */
function encodeChars(value: string, allowed: RegExp, hook?: (char: string) => string | null): string {
  let out = "";
  for (let i = 0; i < value.length; ) {
    const code = value.codePointAt(i) as number;
    const char = String.fromCodePoint(code);
    i += char.length;
    const claimed = hook?.(char) ?? null;
    if (claimed !== null) out += claimed;
    else if (char === "%") out += HEX2.test(value.slice(i, i + 2)) ? "%" : "%25";
    else if (code < 0x80 && allowed.test(char)) out += char;
    else if (code >= 0xd800 && code <= 0xdfff) out += "%EF%BF%BD";
    else out += percentEncode(char);
  }
  return out;
}

function encodeAuthority(authority: string): string {
  const at = authority.lastIndexOf("@");
  let out = at < 0 ? "" : `${encodeChars(authority.slice(0, at), USERINFO_CHAR)}@`;
  const hostPort = authority.slice(at + 1);
  const ip = IP_LITERAL.exec(hostPort);
  if (ip !== null) return `${out}${ip[1]}${ip[2] ? `:${ip[2]}` : ""}`;
  const port = PORT.exec(hostPort);
  out += encodeChars(port === null ? hostPort : hostPort.slice(0, port.index), REGNAME_CHAR);
  // An empty port is allowed by RFC 3986 but not by libxml2: drop the lone ':'.
  return port?.[1] ? `${out}:${port[1]}` : out;
}

/**
 * Makes `value` a valid RFC 3986 URI reference (see the module comment). Idempotent; a usual
 * http(s) URL comes back unchanged after one regular-expression test.
 */
export function toAnyUri(value: string): string {
  if (PLAIN_URL.test(value)) return value;
  const scheme = SCHEME.exec(value)?.[0] ?? "";
  let out = scheme;
  let rest = value.slice(scheme.length);
  if (rest.startsWith("//")) {
    let end = 2;
    while (end < rest.length && !"/?#".includes(rest[end] as string)) end++;
    out += `//${encodeAuthority(rest.slice(2, end))}`;
    rest = rest.slice(end);
  }
  // Without a scheme or authority, a ':' in the first path segment would read as a scheme.
  let firstSegment = out === "";
  let seenHash = false;
  out += encodeChars(rest, PART_CHAR, (char) => {
    if (char === "#") {
      firstSegment = false;
      if (seenHash) return "%23";
      seenHash = true;
      return "#";
    }
    if (char === "[" || char === "]") return percentEncode(char);
    if (char === "/" || char === "?") firstSegment = false;
    else if (char === ":" && firstSegment) return "%3A";
    return null;
  });
  return out;
}
