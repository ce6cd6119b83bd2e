/**
 * Abuse over real sockets against the executable (the same build that ships): slowloris,
 * thousands of idle connections, oversized header blocks, TLS and its reload on SIGHUP.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import type { Subprocess } from "bun";
import { cliCommand, readUntil } from "../rig.ts";

type Proc = Subprocess<"ignore", "pipe", "pipe">;

async function serve(args: string[]): Promise<{ proc: Proc; url: string }> {
  const proc = Bun.spawn(cliCommand(["serve", "--listen", "127.0.0.1:0", ...args]), {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const line = await readUntil(proc.stdout, (l) => l.includes('"msg":"listening"'));
  return { proc, url: (JSON.parse(line) as { url: string }).url };
}

function rssKiB(pid: number): number {
  const status = require("node:fs").readFileSync(`/proc/${pid}/status`, "utf8") as string;
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
}

describe("plain HTTP", () => {
  let server: { proc: Proc; url: string };
  let port = 0;
  beforeAll(async () => {
    server = await serve(["--idle-timeout", "5"]);
    port = Number(new URL(server.url).port);
  });
  afterAll(() => {
    server.proc.kill("SIGKILL");
  });

  test("a header block over 8 KiB is refused with 431 before any handler runs", async () => {
    const big = await fetch(`${server.url}/healthz`, { headers: { "X-Pad": "a".repeat(9_000) } });
    expect(big.status).toBe(431);
    const fine = await fetch(`${server.url}/healthz`, { headers: { "X-Pad": "a".repeat(6_000) } });
    expect(fine.status).toBe(200);
  });

  test(
    "slowloris and silent sockets are closed by the server while normal clients are served",
    async () => {
      const closed: number[] = [];
      const started = performance.now();
      const slow = await Promise.all(
        Array.from({ length: 20 }, () =>
          Bun.connect({
            hostname: "127.0.0.1",
            port,
            socket: {
              data() {},
              close() {
                closed.push(performance.now() - started);
              },
            },
          }),
        ),
      );
      // Plus sockets that connect and never send a byte.
      const silent = await Promise.all(
        Array.from({ length: 5 }, () =>
          Bun.connect({
            hostname: "127.0.0.1",
            port,
            socket: {
              data() {},
              close() {
                closed.push(performance.now() - started);
              },
            },
          }),
        ),
      );
      for (const s of slow) s.write("GET /ad_request?country=us&lang=eng HTTP/1.1\r\nHost: x\r\n");
      const trickle = setInterval(() => {
        for (const s of slow) s.write("X-a: b\r\n");
      }, 500);
      try {
        // Normal clients keep being served while the slow ones hang on.
        for (let i = 0; i < 30; i++) {
          expect((await fetch(`${server.url}/ad_request?country=us&lang=eng`)).status).toBe(200);
        }
        const deadline = performance.now() + 16_000;
        while (closed.length < slow.length + silent.length && performance.now() < deadline)
          await Bun.sleep(250);
      } finally {
        clearInterval(trickle);
        for (const s of [...slow, ...silent]) s.end();
      }
      expect(closed.length).toBe(slow.length + silent.length);
      expect(Math.max(...closed)).toBeLessThan(16_000);
    },
    { timeout: 30_000 },
  );

  test(
    "10,000 idle connections: requests are still served and memory stays bounded",
    async () => {
      const before = rssKiB(server.proc.pid);
      const sockets: Awaited<ReturnType<typeof Bun.connect>>[] = [];
      for (let batch = 0; batch < 20; batch++) {
        const opened = await Promise.all(
          Array.from({ length: 500 }, () =>
            Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } }).catch(() => null),
          ),
        );
        for (const s of opened) if (s !== null) sockets.push(s);
      }
      try {
        expect(sockets.length).toBe(10_000);
        const statuses = await Promise.all(
          Array.from({ length: 20 }, () =>
            fetch(`${server.url}/ad_request?country=us&lang=eng`).then((r) => r.status),
          ),
        );
        expect(statuses.every((s) => s === 200)).toBe(true);
        const after = rssKiB(server.proc.pid);
        expect(after - before).toBeLessThan(256 * 1024);
      } finally {
        for (const s of sockets) s.end();
      }
    },
    { timeout: 60_000 },
  );
});

const hasOpenssl = spawnSync("openssl", ["version"]).status === 0;

describe.skipIf(!hasOpenssl)("TLS", () => {
  let dir = "";
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "adsrv-tls-"));
    for (const name of ["a", "b"]) {
      const made = spawnSync("openssl", [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        join(dir, `${name}.key`),
        "-out",
        join(dir, `${name}.crt`),
        "-days",
        "1",
        "-subj",
        `/CN=adsrv-${name}`,
      ]);
      expect(made.status).toBe(0);
    }
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  function peerName(port: number, minVersion: "TLSv1.2" | "TLSv1.1" = "TLSv1.2", maxVersion?: "TLSv1.1") {
    return new Promise<string>((resolve, reject) => {
      const socket = tlsConnect(
        {
          host: "127.0.0.1",
          port,
          rejectUnauthorized: false,
          minVersion,
          ...(maxVersion ? { maxVersion } : {}),
        },
        () => {
          const cn = socket.getPeerCertificate().subject?.CN ?? "";
          socket.end();
          resolve(String(cn));
        },
      );
      socket.on("error", reject);
    });
  }

  test("serves HTTPS, refuses TLS 1.1, and picks up a renewed certificate on SIGHUP", async () => {
    const { copyFile } = await import("node:fs/promises");
    await copyFile(join(dir, "a.crt"), join(dir, "cur.crt"));
    await copyFile(join(dir, "a.key"), join(dir, "cur.key"));
    const { proc, url } = await serve([
      "--tls-cert",
      join(dir, "cur.crt"),
      "--tls-key",
      join(dir, "cur.key"),
    ]);
    try {
      expect(url).toStartWith("https://");
      const port = Number(new URL(url).port);
      const res = await fetch(`${url}/ad_request?country=us&lang=eng`, {
        tls: { rejectUnauthorized: false },
      });
      expect(res.status).toBe(200);
      expect(await peerName(port)).toBe("adsrv-a");
      expect(peerName(port, "TLSv1.1", "TLSv1.1")).rejects.toThrow();

      await copyFile(join(dir, "b.crt"), join(dir, "cur.crt"));
      await copyFile(join(dir, "b.key"), join(dir, "cur.key"));
      const seen: string[] = [];
      proc.kill("SIGHUP");
      await readUntil(proc.stdout, (l) => l.includes("TLS certificate reloaded"), seen);
      expect(await peerName(port)).toBe("adsrv-b");
      expect((await fetch(`${url}/healthz`, { tls: { rejectUnauthorized: false } })).status).toBe(200);
    } finally {
      proc.kill("SIGTERM");
      expect(await proc.exited).toBe(0);
    }
  });
});
