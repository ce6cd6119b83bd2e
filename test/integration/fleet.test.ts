/**
 * Three `adsrv serve` processes behind nginx (round robin, deploy/nginx/proxy.conf) sharing one
 * private redis-server (issue 5, "Multi-instance tests"):
 * - the campaign service sees about one fetch per refresh interval for the whole fleet;
 * - a catalog change reaches all three within two intervals, and all report the same version
 *   (`/readyz` and the `Adsrv-Catalog-Version` header);
 * - under concurrent load from many players, no player is ever served an ad more often than the
 *   cap, and each player's ads rotate least-recently-served first although consecutive requests
 *   land on different instances.
 * Skipped, with the reason printed, when nginx or redis-server is not installed.
 *
 * Also: the deployment files describe this topology (no Docker engine or cluster here, so they are
 * parsed and cross-checked, and nginx.conf goes through `nginx -t`).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT } from "../rig.ts";
import {
  catalogOf,
  type Fleet,
  hit,
  MISSING,
  NGINX,
  type Outcome,
  readyVersion,
  startFleet,
  until,
} from "./fleet-rig.ts";

if (MISSING !== null) console.warn(MISSING);
const suite = MISSING === null ? describe : describe.skip;

const REFRESH_S = 1;
const CAP = 2;

suite("three adsrv instances behind nginx, one Redis", () => {
  let fleet: Fleet;

  beforeAll(async () => {
    fleet = await startFleet({
      refresh: REFRESH_S,
      cap: CAP,
      catalog: catalogOf(3, "a"),
      // In open mode a Redis call that misses its deadline is decided without the history, which
      // may exceed a cap (by design: availability first). On a busy 2-core box the 50 ms default
      // is missed now and then with no fault at all, so this suite, which checks that the cap is
      // exact when Redis answers, gives Redis calls 1 s; faults.test.ts checks the 50 ms deadline.
      args: ["--store-timeout", "1000"],
    });
    await until(async () => (await versions()).every((v) => v !== null), 10_000, "all three ready");
  }, 20_000);

  afterAll(async () => {
    await fleet?.stop();
  });

  const versions = () => Promise.all(fleet.instances.map(readyVersion));

  /** Sets the catalog and waits until the three serve one version of it; returns that version. */
  async function converge(catalog: unknown, timeoutMs: number): Promise<{ version: string; ms: number }> {
    const before = (await versions())[0];
    fleet.service.catalog = catalog;
    let version = "";
    const ms = await until(
      async () => {
        const vs = await versions();
        const first = vs[0];
        if (first === null || first === undefined || first === before) return false;
        version = first;
        return vs.every((v) => v === first);
      },
      timeoutMs,
      "the fleet to converge on the new catalog",
      10,
    );
    return { version, ms };
  }

  test("the campaign service sees one fetch per interval for the fleet, not one per instance", async () => {
    const before = fleet.service.requests.count;
    const started = performance.now();
    await Bun.sleep(6_000);
    const fetches = fleet.service.requests.count - before;
    const intervals = (performance.now() - started) / 1000 / REFRESH_S;
    console.log(`fleet fetches: ${fetches} in ${intervals.toFixed(1)} intervals (3 instances)`);
    // One per interval, with the ±10 % jitter of each instance's timer; one per instance would be ~18.
    expect(fetches).toBeGreaterThanOrEqual(Math.floor(intervals * 0.6));
    expect(fetches).toBeLessThanOrEqual(Math.ceil(intervals * 1.3) + 1);
  }, 15_000);

  test("a catalog change reaches all three within two intervals, and they report one version", async () => {
    const { version, ms } = await converge(catalogOf(4, "b"), 6_000);
    console.log(`catalog change → all three on ${version} in ${Math.round(ms)} ms`);
    // Within two intervals of the change (+ the 10 ms polling and a little scheduling slack).
    expect(ms).toBeLessThanOrEqual(2 * REFRESH_S * 1000 + 250);

    for (const instance of fleet.instances) {
      const ready = (await (await fetch(`${instance.url}/readyz`)).json()) as Record<string, unknown>;
      expect(ready).toEqual({ status: "ready", catalog_version: version, ads: 4 });
      const direct = await hit(`${instance.url}/ad_request?country=us&lang=eng`);
      expect(direct.status).toBe(200);
      expect(direct.version).toBe(version);
    }
    const viaLb = await Promise.all(
      Array.from({ length: 9 }, () => hit(`${fleet.lb.url}/ad_request?country=us&lang=eng`)),
    );
    expect(viaLb.map((o) => o.status)).toEqual(Array(9).fill(200));
    expect(new Set(viaLb.map((o) => o.version))).toEqual(new Set([version]));
    // nginx spread them over the three instances.
    expect(new Set(viaLb.map((o) => o.upstream)).size).toBe(3);
  }, 15_000);

  test("under load from many players, no player exceeds the cap and rotation is least-recently-served across instances", async () => {
    const ads = 3;
    await converge(catalogOf(ads, "c"), 6_000);
    const run = Date.now().toString(36);
    const storeFailures = () =>
      fleet.instances.reduce(
        (n, i) => n + i.lines.filter((l) => l.includes('"player store failed"')).length,
        0,
      );
    const failuresBefore = storeFailures();
    const url = (player: string) => `${fleet.lb.url}/ad_request?country=us&lang=eng&player_id=${player}`;

    // Part 1: 240 players, each asking 8 times in a row (48 players at a time). With 3 ads and a
    // cap of 2, each sees a permutation of the 3 ads, the same permutation again (least recently
    // served first), then `frequency_capped`.
    const sequential = 240;
    const perPlayer = ads * CAP + 2;
    const sequences = new Map<string, Outcome[]>();
    let nextPlayer = 0;
    await Promise.all(
      Array.from({ length: 48 }, async () => {
        for (let p = nextPlayer++; p < sequential; p = nextPlayer++) {
          const player = `seq-${run}-${p}`;
          const seen: Outcome[] = [];
          for (let i = 0; i < perPlayer; i++) seen.push(await hit(url(player)));
          sequences.set(player, seen);
        }
      }),
    );

    // Part 2: 60 players, each sending 10 requests at once (600 in flight): the cap must hold
    // when one player's requests race on different instances.
    const burstPlayers = 60;
    const burst = 10;
    const bursts = new Map<string, Outcome[]>();
    await Promise.all(
      Array.from({ length: burstPlayers }, async (_, p) => {
        const player = `burst-${run}-${p}`;
        bursts.set(player, await Promise.all(Array.from({ length: burst }, () => hit(url(player)))));
      }),
    );

    // Count every response.
    const problems: string[] = [];
    let total = 0;
    let filled = 0;
    let crossInstance = 0;
    const upstreams = new Set<string>();
    const check = (player: string, outcomes: Outcome[], ordered: boolean) => {
      const perAd = new Map<string, number>();
      for (const o of outcomes) {
        total++;
        if (o.upstream) upstreams.add(o.upstream);
        if (o.status === 200 && o.id !== undefined) {
          filled++;
          perAd.set(o.id, (perAd.get(o.id) ?? 0) + 1);
        } else if (!(o.status === 404 && o.reason === "frequency_capped")) {
          problems.push(`${player}: unexpected ${o.status} ${o.reason ?? o.error ?? ""}`);
        }
      }
      for (const [id, n] of perAd)
        if (n > CAP) problems.push(`${player}: served ${id} ${n} times (cap ${CAP})`);
      // The cap is exact: every ad reaches it, then only frequency_capped.
      if (perAd.size !== ads || [...perAd.values()].some((n) => n !== CAP))
        problems.push(
          `${player}: fills per ad ${JSON.stringify(Object.fromEntries(perAd))}, want ${CAP} each`,
        );
      if (!ordered) return;
      const ids = outcomes.map((o) => o.id ?? `(${o.status} ${o.reason ?? ""})`);
      const first = ids.slice(0, ads);
      const expected = [...first, ...first, ...Array(perPlayer - ads * CAP).fill("(404 frequency_capped)")];
      if (new Set(first).size !== ads || ids.join() !== expected.join())
        problems.push(`${player}: rotation ${ids.join(" ")}`);
      for (let i = 1; i < outcomes.length; i++)
        if (outcomes[i]?.upstream !== outcomes[i - 1]?.upstream) crossInstance++;
    };
    for (const [player, outcomes] of sequences) check(player, outcomes, true);
    for (const [player, outcomes] of bursts) check(player, outcomes, false);

    console.log(
      `players: ${sequences.size} sequential + ${bursts.size} bursts; ${total} responses, ${filled} fills, ` +
        `${crossInstance} consecutive requests of one player on different instances`,
    );
    if (problems.length > 0)
      console.error(`${problems.slice(0, 20).join("\n")}\n${await fleet.diagnostics()}`);
    // Every decision used the shared history (no fallback): otherwise the cap is not the point.
    expect(storeFailures() - failuresBefore).toBe(0);
    expect(problems.length).toBe(0);
    expect(total).toBe(sequential * perPlayer + burstPlayers * burst);
    expect(filled).toBe((sequential + burstPlayers) * ads * CAP);
    expect(upstreams.size).toBe(3);
    // Consecutive requests of a player mostly went to another instance: rotation is fleet-wide.
    expect(crossInstance).toBeGreaterThan(sequential * (perPlayer - 1) * 0.3);
  }, 30_000);
});

// biome-ignore lint/suspicious/noExplicitAny: parsed YAML documents are checked field by field
type Doc = any;
const DEPLOY = join(ROOT, "deploy");
const yaml = (path: string): Doc => Bun.YAML.parse(readFileSync(path, "utf8"));

describe("the deployment files describe the same fleet", () => {
  test("docker-compose.yml: three adsrv replicas on one Redis, nginx in front of exactly those three", () => {
    const compose = yaml(join(DEPLOY, "docker-compose.yml"));
    const services = compose.services as Record<string, Doc>;
    const adsrv = Object.keys(services).filter((name) => /^adsrv-\d+$/.test(name));
    expect(adsrv).toEqual(["adsrv-1", "adsrv-2", "adsrv-3"]);
    for (const name of adsrv) {
      const s = services[name];
      expect(s.build.dockerfile).toBe("Dockerfile");
      expect(s.environment.ADSRV_REDIS).toBe("redis://redis:6379");
      expect(s.environment.ADSRV_LISTEN).toBe("0.0.0.0:8080");
      expect(s.environment.ADSRV_IMPRESSION_KEY).toStartWith("${ADSRV_IMPRESSION_KEY:?");
      // No adsrv port is published: nginx is the only way in.
      expect(s.ports).toBeUndefined();
      for (const key of Object.keys(s.environment)) expect(key).toStartWith("ADSRV_");
    }
    expect(services.redis.image).toStartWith("redis:7");
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a compose variable, not a template
    expect(services.nginx.ports).toEqual(["${ADSRV_PUBLISH:-127.0.0.1:8080}:8080"]);
    const conf = readFileSync(join(DEPLOY, "nginx", "nginx.conf"), "utf8");
    const upstream = [...conf.matchAll(/^\s*server (adsrv-\d+):8080 /gm)].map((m) => m[1]);
    expect(upstream).toEqual(adsrv);
    expect(conf).toContain("include /etc/nginx/adsrv/retry.conf;");
    const retry = readFileSync(join(DEPLOY, "nginx", "retry.conf"), "utf8");
    expect(retry).toContain("proxy_next_upstream error timeout http_502 http_503;");
    const closed = readFileSync(join(DEPLOY, "nginx", "retry-closed.conf"), "utf8");
    expect(closed).toContain("proxy_next_upstream error timeout http_502;");
    const keys = yaml(join(DEPLOY, "docker-compose.keys.yml"));
    expect(Object.keys(keys.services)).toEqual(adsrv);
  });

  test.skipIf(NGINX === null)("nginx.conf passes nginx -t (Docker host names replaced by loopback)", () => {
    const dir = mkdtempSync(join(tmpdir(), "adsrv-nginx-t-"));
    try {
      // nginx 1.22 (Debian 12) lacks `resolve` in upstreams (1.27.3+, the compose file runs 1.28).
      const conf = readFileSync(join(DEPLOY, "nginx", "nginx.conf"), "utf8")
        .replace(/adsrv-\d+:8080/g, "127.0.0.1:8080")
        .replace(/ resolve;/g, ";")
        .replace(/^\s*resolver .*$/m, "")
        .replaceAll("/etc/nginx/adsrv/", `${join(DEPLOY, "nginx")}/`)
        .replace("pid /tmp/nginx.pid;", `pid ${dir}/nginx.pid;`)
        // /dev/stdout and /dev/stderr cannot be opened when they are sockets (as under bun test).
        .replace(/\/dev\/(stdout|stderr)/g, `${dir}/$1.log`);
      writeFileSync(join(dir, "nginx.conf"), conf);
      const t = Bun.spawnSync([
        NGINX as string,
        "-t",
        "-p",
        dir,
        "-c",
        join(dir, "nginx.conf"),
        "-e",
        join(dir, "error.log"),
      ]);
      expect(t.stderr.toString()).toContain("test is successful");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("deploy/k8s: probes, drain, non-root, autoscaling and disruption budget agree with each other", () => {
    const dir = join(DEPLOY, "k8s");
    const docs = new Map(
      readdirSync(dir)
        .filter((f) => f.endsWith(".yaml"))
        .map((f) => [f, yaml(join(dir, f))]),
    );
    const kustomization = docs.get("kustomization.yaml");
    for (const resource of kustomization.resources) expect(docs.has(resource)).toBe(true);
    expect(kustomization.resources).not.toContain("secret.example.yaml");

    const deployment = docs.get("deployment.yaml");
    const pod = deployment.spec.template.spec;
    const labels = deployment.spec.template.metadata.labels;
    const selects = (selector: Record<string, string>) =>
      Object.entries(selector).every(([k, v]) => labels[k] === v);
    expect(selects(deployment.spec.selector.matchLabels)).toBe(true);
    expect(selects(docs.get("service.yaml").spec.selector)).toBe(true);
    expect(selects(docs.get("pdb.yaml").spec.selector.matchLabels)).toBe(true);

    const [container] = pod.containers;
    const ports = container.ports.map((p: Doc) => p.name);
    expect(container.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "http" });
    expect(container.livenessProbe.httpGet).toEqual({ path: "/healthz", port: "http" });
    expect(ports).toContain(docs.get("service.yaml").spec.ports[0].targetPort);
    expect(container.resources.requests.cpu).toBeDefined();
    expect(container.resources.limits.memory).toBeDefined();

    const config = docs.get("configmap.yaml").data as Record<string, string>;
    for (const [key, value] of Object.entries(config)) {
      expect(key).toStartWith("ADSRV_");
      expect(typeof value).toBe("string");
    }
    const preStop = Number(container.lifecycle.preStop.exec.command[1]);
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(
      preStop + Number(config.ADSRV_SHUTDOWN_GRACE) + 5,
    );

    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(pod.securityContext.runAsUser).toBe(10001);
    expect(container.securityContext.allowPrivilegeEscalation).toBe(false);
    expect(container.securityContext.capabilities.drop).toEqual(["ALL"]);
    // A read-only root: every path adsrv writes is a volume.
    expect(container.securityContext.readOnlyRootFilesystem).toBe(true);
    const mounts = container.volumeMounts.map((m: Doc) => m.mountPath);
    expect(mounts).toContain(config.ADSRV_STATE_DIR);
    expect(mounts.some((m: string) => config.ADSRV_API_KEYS?.startsWith(`${m}/`))).toBe(true);

    const secret = docs.get("secret.example.yaml");
    for (const env of container.env)
      expect(Object.keys(secret.stringData)).toContain(env.valueFrom.secretKeyRef.key);

    const hpa = docs.get("hpa.yaml");
    expect(hpa.spec.scaleTargetRef).toMatchObject({ kind: "Deployment", name: deployment.metadata.name });
    expect(hpa.spec.metrics[0].resource.name).toBe("cpu");
    expect(hpa.spec.minReplicas).toBe(deployment.spec.replicas);
    expect(docs.get("pdb.yaml").spec.maxUnavailable).toBe(1);
  });
});
