/**
 * One HTTP/1.1 exchange over a raw socket, for request targets `fetch` would rewrite before
 * sending (`//x`, `/./x`, `/a/../x`): the server must see exactly what the test wrote.
 * @module
 */
import type { Received } from "./document.ts";

const CRLF2 = new Uint8Array([13, 10, 13, 10]);

function indexOf(haystack: Uint8Array, needle: Uint8Array, from = 0): number {
  outer: for (let i = from; i <= haystack.length - needle.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

function dechunk(body: Uint8Array): Uint8Array {
  const out: number[] = [];
  let at = 0;
  const decoder = new TextDecoder();
  for (;;) {
    const eol = indexOf(body, new Uint8Array([13, 10]), at);
    if (eol < 0) break;
    const size = Number.parseInt(decoder.decode(body.subarray(at, eol)), 16);
    if (!Number.isFinite(size) || size === 0) break;
    out.push(...body.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
  return new Uint8Array(out);
}

/** Sends `METHOD target HTTP/1.1` with `Connection: close` and reads the answer to the end. */
export async function rawRequest(
  base: string,
  method: string,
  target: string,
  headers: Readonly<Record<string, string>> = {},
  timeoutMs = 3000,
): Promise<Received> {
  const { hostname, port } = new URL(base);
  const chunks: Uint8Array[] = [];
  const closed = Promise.withResolvers<void>();
  const socket = await Bun.connect({
    hostname,
    port: Number(port),
    socket: {
      data(_s, data) {
        chunks.push(new Uint8Array(data));
      },
      close() {
        closed.resolve();
      },
      error(_s, error) {
        closed.reject(error);
      },
    },
  });
  const extra = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("");
  socket.write(
    `${method} ${target} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nConnection: close\r\n${extra}\r\n`,
  );
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no complete answer to ${method} ${target} within ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  try {
    await Promise.race([closed.promise, late]);
  } finally {
    clearTimeout(timer);
    socket.end();
  }
  const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const c of chunks) {
    all.set(c, offset);
    offset += c.length;
  }
  const split = indexOf(all, CRLF2);
  if (split < 0) throw new Error(`no header block in the answer to ${method} ${target}`);
  const [statusLine = "", ...lines] = new TextDecoder().decode(all.subarray(0, split)).split("\r\n");
  const status = Number(statusLine.split(" ")[1]);
  const received = new Headers();
  for (const line of lines) {
    const colon = line.indexOf(":");
    if (colon > 0) received.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  let body: Uint8Array = all.subarray(split + 4);
  if (method === "HEAD") body = new Uint8Array();
  else if (/chunked/i.test(received.get("transfer-encoding") ?? "")) body = dechunk(body);
  else if (received.has("content-length")) body = body.subarray(0, Number(received.get("content-length")));
  return { status, headers: received, body: new TextDecoder().decode(body) };
}
