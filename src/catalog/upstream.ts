/**
 * Reading the catalog source: a file path or an http(s) URL of the campaign service.
 *
 * URL fetches send `If-None-Match` / `If-Modified-Since` when the service gave validators,
 * never follow redirects, and are bounded in time (connect + headers, then total) and bytes.
 * Bun's `fetch` is used directly: a bare `undici` import is swapped for Bun's own, whose
 * dispatcher options are ignored (see docs/architecture.md).
 * @module
 */
import { stat } from "node:fs/promises";

export interface FetchLimits {
  /** Milliseconds until the response headers arrive (covers connecting). */
  readonly connectTimeoutMs: number;
  /** Milliseconds for the whole exchange, body included. */
  readonly totalTimeoutMs: number;
  /** Largest body accepted, in bytes. */
  readonly maxBytes: number;
}

export const DEFAULT_LIMITS: FetchLimits = {
  connectTimeoutMs: 2_000,
  totalTimeoutMs: 30_000,
  maxBytes: 256 * 1024 * 1024,
};

/** What identifies the version last read, so an unchanged source is not read again. */
export interface Validators {
  readonly etag?: string;
  readonly lastModified?: string;
  /** File sources: size and modification time. */
  readonly fileStamp?: string;
}

export type FetchFailure =
  | "connect"
  | "timeout"
  | "http_status"
  | "redirect"
  | "too_large"
  | "read"
  | "not_found";

export type FetchResult =
  | { readonly kind: "unchanged" }
  | {
      readonly kind: "body";
      /** The body as read; `text` decodes it (UTF-8, a leading byte order mark dropped) on first use. */
      readonly data: Uint8Array;
      readonly text: string;
      readonly validators: Validators;
      readonly bytes: number;
    }
  | { readonly kind: "failed"; readonly failure: FetchFailure; readonly message: string };

/**
 * A body result. The text is decoded only when asked for: the sync loop hands a big body's bytes
 * to the catalog worker as they are (src/catalog/offthread.ts), so this thread never decodes it.
 */
function bodyOf(data: Uint8Array, validators: Validators, bytes: number): FetchResult {
  const body = lazyBody(data);
  return {
    kind: "body",
    data,
    get text() {
      return body.text;
    },
    validators,
    bytes,
  };
}

/** Bytes whose text (UTF-8, a leading byte order mark dropped) is decoded on first use only. */
export function lazyBody(data: Uint8Array): { readonly data: Uint8Array; readonly text: string } {
  let text: string | null = null;
  return {
    data,
    get text() {
      text ??= new TextDecoder().decode(data);
      return text;
    },
  };
}

export function isUrl(source: string): boolean {
  return /^https?:\/\//i.test(source);
}

/** Progress callback: bytes received so far and the announced total (or null). */
export type Progress = (received: number, total: number | null) => void;

/** Reads the source once. Never throws. */
export async function readSource(
  source: string,
  previous: Validators | null,
  limits: FetchLimits = DEFAULT_LIMITS,
  onProgress?: Progress,
): Promise<FetchResult> {
  return isUrl(source) ? fetchUrl(source, previous, limits, onProgress) : readFile(source, previous, limits);
}

async function readFile(
  path: string,
  previous: Validators | null,
  limits: FetchLimits,
): Promise<FetchResult> {
  try {
    const info = await stat(path);
    if (!info.isFile()) return { kind: "failed", failure: "read", message: `${path} is not a regular file` };
    const stamp = `${info.size}:${info.mtimeMs}`;
    if (previous?.fileStamp === stamp) return { kind: "unchanged" };
    if (info.size > limits.maxBytes) {
      return {
        kind: "failed",
        failure: "too_large",
        message: `file is ${info.size} bytes, over the ${limits.maxBytes} limit`,
      };
    }
    // Bun.file().bytes() reads off the event loop (readFile() + toString("utf8") left 88-110 ms
    // gaps for 1M ads, 144 MiB: `readLoopGapMs` of scripts/bench/load.ts). At most the limit
    // (+1) bytes are read, whatever the file does.
    const data = await Bun.file(path)
      .slice(0, limits.maxBytes + 1)
      .bytes();
    // Written to while it was read (in place rather than renamed over): this text may be neither
    // version, nor within the limit. The next check reads it again.
    const after = await stat(path);
    if (`${after.size}:${after.mtimeMs}` !== stamp) {
      return {
        kind: "failed",
        failure: "read",
        message: `${path} changed while it was read; it is read again at the next check`,
      };
    }
    return bodyOf(data, { fileStamp: stamp }, info.size);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return { kind: "failed", failure: "not_found", message: `${path} does not exist` };
    return { kind: "failed", failure: "read", message: `cannot read ${path}: ${code ?? "error"}` };
  }
}

async function fetchUrl(
  url: string,
  previous: Validators | null,
  limits: FetchLimits,
  onProgress?: Progress,
): Promise<FetchResult> {
  const total = AbortSignal.timeout(limits.totalTimeoutMs);
  const headersDeadline = new AbortController();
  const timer = setTimeout(() => headersDeadline.abort(), limits.connectTimeoutMs);
  const signal = AbortSignal.any([total, headersDeadline.signal]);
  const headers: Record<string, string> = { Accept: "application/json" };
  if (previous?.etag) headers["If-None-Match"] = previous.etag;
  if (previous?.lastModified) headers["If-Modified-Since"] = previous.lastModified;
  let response: Response;
  try {
    response = await fetch(url, { headers, redirect: "manual", signal });
  } catch (error) {
    clearTimeout(timer);
    if (total.aborted || headersDeadline.signal.aborted) {
      return {
        kind: "failed",
        failure: "timeout",
        message: `no response within ${limits.connectTimeoutMs} ms`,
      };
    }
    return {
      kind: "failed",
      failure: "connect",
      message: `cannot reach the campaign service: ${errorCode(error)}`,
    };
  }
  clearTimeout(timer);
  if (response.status === 304) {
    await response.body?.cancel();
    return { kind: "unchanged" };
  }
  if (response.status >= 300 && response.status < 400) {
    await response.body?.cancel();
    return { kind: "failed", failure: "redirect", message: `redirect (${response.status}) not followed` };
  }
  if (response.status < 200 || response.status >= 300) {
    await response.body?.cancel();
    return {
      kind: "failed",
      failure: "http_status",
      message: `campaign service answered ${response.status}`,
    };
  }
  let body: CappedBody;
  try {
    body = await readCapped(response, limits.maxBytes, onProgress);
  } catch (error) {
    if (total.aborted) {
      return {
        kind: "failed",
        failure: "timeout",
        message: `body not received within ${limits.totalTimeoutMs} ms`,
      };
    }
    return { kind: "failed", failure: "read", message: `body read failed: ${errorCode(error)}` };
  }
  const validators: { etag?: string; lastModified?: string } = {};
  const etag = response.headers.get("etag");
  const lastModified = response.headers.get("last-modified");
  if (etag) validators.etag = etag;
  if (lastModified) validators.lastModified = lastModified;
  if (!body.ok) return { kind: "failed", failure: "too_large", message: body.message };
  return bodyOf(body.body, validators, body.bytes);
}

export type CappedBody =
  | { readonly ok: true; readonly body: Buffer; readonly bytes: number }
  | { readonly ok: false; readonly message: string };

/**
 * Reads a response body of at most `maxBytes`: an announced Content-Length over the cap is refused
 * at once, a longer stream is cut as soon as it passes the cap (memory stays bounded either way).
 * Read errors (a reset, an abort) are thrown for the caller to classify.
 */
export async function readCapped(
  response: Response,
  maxBytes: number,
  onProgress?: Progress,
): Promise<CappedBody> {
  const announced = Number(response.headers.get("content-length") ?? Number.NaN);
  if (announced > maxBytes) {
    await response.body?.cancel().catch(() => {});
    return { ok: false, message: `body of ${announced} bytes is over the ${maxBytes} limit` };
  }
  const chunks: Uint8Array[] = [];
  let received = 0;
  const reader = response.body?.getReader();
  if (reader !== undefined) {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      received += value.byteLength;
      if (received > maxBytes) {
        await reader.cancel().catch(() => {});
        return { ok: false, message: `body is over the ${maxBytes} byte limit` };
      }
      chunks.push(value);
      onProgress?.(received, Number.isFinite(announced) ? announced : null);
    }
  }
  return { ok: true, body: Buffer.concat(chunks), bytes: received };
}

function errorCode(error: unknown): string {
  if (error && typeof error === "object" && "code" in error && typeof error.code === "string")
    return error.code;
  return error instanceof Error ? error.name : "error";
}
