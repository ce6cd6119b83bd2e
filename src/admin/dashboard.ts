/**
 * The `/dashboard` page: one self-contained HTML document (inline CSS and JS, no CDN), built
 * into the executable as a string. It polls `/dashboard/data` every 2 s (the second time half a
 * second after loading, so rates show at once) and `/catalog` when the catalog version changes,
 * and draws its charts on plain `<canvas>` elements.
 *
 * Everything from the server is written with `textContent` (catalog fields are untrusted
 * input). The response's Content-Security-Policy admits exactly this script and style by hash.
 *
 * Element ids tests can query: `#rps-value`, `#fill-value`, `#latency-value`, `#rps-chart`,
 * `#fill-chart`, `#latency-chart`, `#country-chart`, `#ad-chart` (each chart carries
 * `data-points` or `data-rows`), `#catalog-version`, `#catalog-age`, `#last-sync`,
 * `#last-sync-detail`, `#catalog-table` (one `tbody tr` per ad), `#catalog-search`,
 * `#catalog-count`, `#counters`, `#status`.
 * @module
 */

/** How often the page polls `/dashboard/data`, in ms. */
export const DASHBOARD_REFRESH_MS = 2000;

const STYLE = `
:root { color-scheme: light dark; --bg:#f6f7f9; --fg:#1d2330; --muted:#667085; --card:#fff; --line:#d9dde3;
  --a:#2563eb; --b:#f59e0b; --c:#dc2626; --ok:#16a34a; --bad:#dc2626; }
@media (prefers-color-scheme: dark) { :root { --bg:#12151b; --fg:#e6e9ef; --muted:#98a2b3; --card:#1b2029;
  --line:#2d3442; } }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; background:var(--bg); color:var(--fg); }
header { display:flex; align-items:baseline; gap:16px; padding:12px 20px; border-bottom:1px solid var(--line); }
header h1 { font-size:18px; margin:0; }
#status { font-size:12px; padding:2px 8px; border-radius:10px; background:var(--line); }
#status.ok { background:var(--ok); color:#fff; } #status.bad { background:var(--bad); color:#fff; }
#updated { color:var(--muted); font-size:12px; }
main { padding:16px 20px; display:grid; gap:16px; }
.cards { display:grid; grid-template-columns:repeat(auto-fit, minmax(170px, 1fr)); gap:12px; }
.card, figure { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:10px 14px; margin:0; }
.label, figcaption { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.value { font-size:22px; font-weight:600; font-variant-numeric:tabular-nums; overflow-wrap:anywhere; }
.value.id { font-size:16px; font-family:ui-monospace, monospace; padding-top:5px; word-break:break-all; }
.sub { color:var(--muted); font-size:12px; overflow-wrap:anywhere; }
.charts { display:grid; grid-template-columns:repeat(auto-fit, minmax(340px, 1fr)); gap:12px; }
canvas { display:block; width:100%; height:170px; margin-top:6px; }
canvas.bars { height:120px; }
.note { color:var(--muted); font-size:12px; }
table { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums; }
th, td { text-align:left; padding:4px 8px; border-bottom:1px solid var(--line); white-space:nowrap; }
td.url { white-space:normal; overflow-wrap:anywhere; font-size:12px; }
td.num, th.num { text-align:right; }
#counters td:last-child { text-align:right; }
.catalog-head { display:flex; gap:12px; align-items:center; flex-wrap:wrap; }
.catalog-head h2 { font-size:16px; margin:0; }
#catalog-search { flex:1; min-width:200px; max-width:420px; padding:6px 10px; border:1px solid var(--line);
  border-radius:6px; background:var(--card); color:var(--fg); }
.table-wrap { max-height:480px; overflow:auto; margin-top:8px; }
`;

const SCRIPT = `
"use strict";
(() => {
  const INTERVAL = ${DASHBOARD_REFRESH_MS};
  const HISTORY = 90;
  const $ = (id) => document.getElementById(id);
  const hist = { rps: [], fill: [], p50: [], p99: [] };
  let prev = null;
  let prevClock = 0;
  let catalogVersion = null;
  let catalogTruncated = false;
  let served = null;
  const rowsById = new Map();

  function quantile(bounds, counts, q) {
    let total = 0;
    for (const c of counts) total += c;
    if (total <= 0) return null;
    const rank = q * total;
    let below = 0;
    for (let i = 0; i < counts.length; i++) {
      const c = counts[i];
      if (c > 0 && below + c >= rank) {
        if (i >= bounds.length) return bounds[bounds.length - 1];
        const lower = i === 0 ? 0 : bounds[i - 1];
        return lower + (bounds[i] - lower) * ((rank - below) / c);
      }
      below += c;
    }
    return bounds[bounds.length - 1];
  }
  function ms(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const v = seconds * 1000;
    return (v < 1 ? v.toFixed(3) : v < 100 ? v.toFixed(1) : v.toFixed(0)) + " ms";
  }
  function pct(x) { return x === null || x === undefined ? "–" : (x * 100).toFixed(1) + " %"; }
  function ago(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 60) return Math.round(seconds) + " s ago";
    if (seconds < 3600) return Math.round(seconds / 60) + " min ago";
    if (seconds < 86400) return (seconds / 3600).toFixed(1) + " h ago";
    return (seconds / 86400).toFixed(1) + " d ago";
  }
  function push(arr, v) { arr.push(v); if (arr.length > HISTORY) arr.shift(); }
  function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }
  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }

  function surface(canvas, height) {
    if (height) canvas.style.height = height + "px";
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 300, h = canvas.clientHeight || 150;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = "11px system-ui, sans-serif";
    return { ctx, w, h };
  }
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  // series: [{ name, color, values }], values may hold null (a gap).
  function lineChart(canvas, series, format, fixedMax) {
    const { ctx, w, h } = surface(canvas);
    const L = 56, R = 8, T = 18, B = 8;
    let max = 0;
    for (const s of series) for (const v of s.values) if (v !== null && v > max) max = v;
    max = fixedMax || niceMax(max);
    ctx.strokeStyle = css("--line"); ctx.fillStyle = css("--muted"); ctx.lineWidth = 1;
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    for (let i = 0; i <= 4; i++) {
      const y = T + (h - T - B) * (1 - i / 4);
      ctx.beginPath(); ctx.moveTo(L, y); ctx.lineTo(w - R, y); ctx.stroke();
      ctx.fillText(format(max * i / 4), L - 6, y);
    }
    let legendX = L;
    ctx.textAlign = "left"; ctx.textBaseline = "top";
    let points = 0;
    for (const s of series) {
      ctx.fillStyle = s.color; ctx.fillRect(legendX, 3, 10, 10);
      ctx.fillStyle = css("--fg"); ctx.fillText(s.name, legendX + 14, 2);
      legendX += ctx.measureText(s.name).width + 34;
      ctx.strokeStyle = s.color; ctx.lineWidth = 2; ctx.beginPath();
      let pen = false;
      let lx = -1, ly = -1;
      const n = s.values.length;
      s.values.forEach((v, i) => {
        if (v === null) { pen = false; return; }
        const x = L + (w - L - R) * ((HISTORY - n + i) / (HISTORY - 1));
        const y = T + (h - T - B) * (1 - Math.min(v, max) / max);
        if (pen) ctx.lineTo(x, y); else ctx.moveTo(x, y);
        pen = true; lx = x; ly = y;
      });
      ctx.stroke();
      if (lx >= 0) { ctx.fillStyle = s.color; ctx.beginPath(); ctx.arc(lx, ly, 3, 0, 2 * Math.PI); ctx.fill(); }
      points = Math.max(points, s.values.filter((v) => v !== null).length);
    }
    canvas.dataset.points = String(points);
  }

  // rows: [{ label, a, b }] drawn as two horizontal bars each (served, impressions).
  function barChart(canvas, rows, names) {
    const height = Math.max(60, rows.length * 24 + 26);
    const { ctx, w } = surface(canvas, height);
    const L = 90, R = 60, T = 20;
    let max = 0;
    for (const r of rows) max = Math.max(max, r.a, r.b);
    max = niceMax(max);
    const colors = [css("--a"), css("--b")];
    ctx.textBaseline = "top"; ctx.textAlign = "left";
    names.forEach((name, i) => {
      ctx.fillStyle = colors[i]; ctx.fillRect(L + i * 110, 4, 10, 10);
      ctx.fillStyle = css("--fg"); ctx.fillText(name, L + i * 110 + 14, 3);
    });
    let total = 0;
    rows.forEach((r, i) => {
      const y = T + i * 24;
      ctx.fillStyle = css("--fg"); ctx.textAlign = "right"; ctx.textBaseline = "middle";
      ctx.fillText(r.label.length > 14 ? r.label.slice(0, 13) + "…" : r.label, L - 6, y + 10);
      [r.a, r.b].forEach((v, k) => {
        ctx.fillStyle = colors[k];
        const bw = (w - L - R) * (v / max);
        ctx.fillRect(L, y + 2 + k * 9, Math.max(bw, v > 0 ? 1 : 0), 8);
        ctx.fillStyle = css("--muted"); ctx.textAlign = "left";
        if (v > 0 || k === 0) ctx.fillText(String(v), L + bw + 4, y + 6 + k * 9);
      });
      total += r.a;
    });
    canvas.dataset.rows = String(rows.length);
    canvas.dataset.total = String(total);
  }

  function topRows(record, limit) {
    return Object.entries(record || {})
      .map(([label, c]) => ({ label, a: c.served, b: c.impressions }))
      .sort((x, y) => y.a - x.a || y.b - x.b || (x.label < y.label ? -1 : 1))
      .slice(0, limit);
  }

  function drawCharts() {
    lineChart($("rps-chart"), [{ name: "requests/s", color: css("--a"), values: hist.rps }],
      (v) => v >= 100 ? v.toFixed(0) : v.toFixed(1));
    lineChart($("fill-chart"), [{ name: "fill rate", color: css("--ok"), values: hist.fill }],
      (v) => (v * 100).toFixed(0) + "%", 1);
    lineChart($("latency-chart"), [
      { name: "p50", color: css("--a"), values: hist.p50 },
      { name: "p99", color: css("--c"), values: hist.p99 },
    ], (v) => v < 1 ? v.toFixed(2) : v.toFixed(0));
    const note = $("served-note");
    if (served === null) {
      note.textContent = "served counts are not available on this instance";
      barChart($("country-chart"), [], ["served", "impressions"]);
      barChart($("ad-chart"), [], ["served", "impressions"]);
    } else {
      note.textContent = "";
      barChart($("country-chart"), topRows(served.byCountry, 15), ["served", "impressions"]);
      barChart($("ad-chart"), topRows(served.byAd, 15), ["served", "impressions"]);
    }
  }

  function counters(m) {
    const rows = [];
    const add = (name, value) => rows.push([name, String(value)]);
    add("requests (total)", m.requests.total);
    for (const [code, n] of Object.entries(m.requests.byCode)) add("status " + code, n);
    for (const [reason, n] of Object.entries(m.decisions.byReason)) add("no fill: " + reason, n);
    for (const [kind, n] of Object.entries(m.syncFailures)) if (n > 0) add("sync failed: " + kind, n);
    for (const [kind, n] of Object.entries(m.store.errors)) if (n > 0) add("store error: " + kind, n);
    add("store breaker", m.store.breaker);
    add("store fallbacks", m.store.fallbacks);
    for (const [k, n] of Object.entries(m.rateLimited)) add("rate limited: " + k, n);
    add("shed", m.shed);
    for (const [k, n] of Object.entries(m.impressions)) add("impressions " + k, n);
    for (const [k, n] of Object.entries(m.authFailures)) if (n > 0) add("auth failed: " + k, n);
    const body = $("counters").tBodies[0];
    body.replaceChildren(...rows.map(([k, v]) => {
      const tr = el("tr"); tr.append(el("td", k), el("td", v)); return tr;
    }));
  }

  function showSync(sync) {
    const head = $("last-sync"), detail = $("last-sync-detail");
    if (sync === null) {
      head.textContent = "none";
      detail.textContent = "no sync has run (built-in or not yet loaded)";
      return;
    }
    head.textContent = sync.kind + " · " + ago(sync.age_seconds);
    if (sync.kind === "failed") detail.textContent = sync.failure + ": " + sync.message;
    else if (sync.kind === "updated") detail.textContent = "version " + sync.version + ", " + sync.ads + " ads from " + sync.from;
    else detail.textContent = "source unchanged";
    head.dataset.kind = sync.kind;
  }

  function updateServedCells() {
    for (const [id, cells] of rowsById) {
      const c = served && served.byAd[id];
      cells.served.textContent = c ? String(c.served) : "0";
      cells.impressions.textContent = c ? String(c.impressions) : "0";
    }
  }

  function fillTable(doc) {
    const body = $("catalog-table").tBodies[0];
    rowsById.clear();
    const rows = doc.ads.map((ad) => {
      const tr = el("tr");
      const cells = { served: el("td", "0", "num"), impressions: el("td", "0", "num") };
      tr.append(el("td", ad.id), el("td", ad.country), el("td", ad.lang), el("td", ad.runs),
        cells.served, cells.impressions, el("td", ad.video_url, "url"));
      tr.dataset.search = [ad.id, ad.country, ad.lang, ad.video_url, ad.runs].join(" ").toLowerCase();
      rowsById.set(ad.id, cells);
      return tr;
    });
    body.replaceChildren(...rows);
    catalogTruncated = doc.matched > doc.ads.length;
    updateServedCells();
    filterTable();
  }

  function filterTable() {
    const q = $("catalog-search").value.trim().toLowerCase();
    let shown = 0;
    const rows = $("catalog-table").tBodies[0].rows;
    for (const tr of rows) {
      const hit = q === "" || tr.dataset.search.includes(q);
      tr.hidden = !hit;
      if (hit) shown++;
    }
    $("catalog-count").textContent = shown + " of " + rows.length + " ads shown" + (catalogTruncated ? " (list truncated; search asks the server)" : "");
  }

  async function loadCatalog(q) {
    const url = "/catalog?limit=5000" + (q ? "&q=" + encodeURIComponent(q) : "");
    const res = await fetch(url, { cache: "no-store" });
    if (!res.ok) return;
    const doc = await res.json();
    catalogVersion = doc.version;
    fillTable(doc);
  }

  let searchTimer = 0;
  $("catalog-search").addEventListener("input", () => {
    if (!catalogTruncated) { filterTable(); return; }
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { loadCatalog($("catalog-search").value.trim()).catch(() => {}); }, 250);
  });

  function update(d) {
    const m = d.metrics;
    const clock = performance.now();
    if (prev !== null) {
      let dt = (m.at - prev.at) / 1000;
      if (!(dt > 0)) dt = (clock - prevClock) / 1000;
      if (dt > 0) {
        push(hist.rps, (m.requests.total - prev.requests.total) / dt);
        const decided = m.decisions.total - prev.decisions.total;
        push(hist.fill, decided > 0 ? (m.decisions.fill - prev.decisions.fill) / decided : null);
        const delta = m.latency.buckets.map((c, i) => c - (prev.latency.buckets[i] || 0));
        const p50 = quantile(m.latency.bounds, delta, 0.5), p99 = quantile(m.latency.bounds, delta, 0.99);
        push(hist.p50, p50 === null ? null : p50 * 1000);
        push(hist.p99, p99 === null ? null : p99 * 1000);
      }
    }
    prev = m; prevClock = clock;
    const last = (arr) => arr.length ? arr[arr.length - 1] : null;
    const rps = last(hist.rps);
    $("rps-value").textContent = rps === null ? "–" : rps.toFixed(1);
    const fill = last(hist.fill);
    $("fill-value").textContent = fill === null ? pct(m.decisions.fillRate) : pct(fill);
    const p50 = last(hist.p50), p99 = last(hist.p99);
    $("latency-value").textContent = p50 === null
      ? ms(m.latency.all.p50) + " / " + ms(m.latency.all.p99)
      : ms(p50 / 1000) + " / " + ms(p99 / 1000);

    if (d.catalog === null) {
      $("catalog-version").textContent = "no catalog";
      $("catalog-age").textContent = "";
    } else {
      $("catalog-version").textContent = d.catalog.version;
      $("catalog-age").textContent = d.catalog.ads + " ads · loaded " + ago(d.catalog.age_seconds) +
        (m.catalog.lastSuccessAgeSeconds === null ? "" : " · last good sync " + ago(m.catalog.lastSuccessAgeSeconds));
      if (d.catalog.version !== catalogVersion) loadCatalog("").catch(() => {});
    }
    showSync(d.sync);
    served = d.served;
    updateServedCells();
    counters(m);
    drawCharts();
    $("updated").textContent = "updated " + new Date(d.now).toISOString().replace("T", " ").slice(0, 19) + " UTC";
  }

  let polls = 0;
  async function poll() {
    try {
      const res = await fetch("/dashboard/data", { cache: "no-store" });
      if (!res.ok) throw new Error("HTTP " + res.status);
      update(await res.json());
      $("status").textContent = "live";
      $("status").className = "ok";
    } catch (e) {
      $("status").textContent = "unreachable (" + (e && e.message ? e.message : "error") + ")";
      $("status").className = "bad";
    } finally {
      // A second sample soon after loading, so the first rates show without a full interval.
      polls++;
      setTimeout(poll, polls === 1 ? 500 : INTERVAL);
    }
  }
  window.addEventListener("resize", drawCharts);
  poll();
})();
`;

const BODY = `
<header><h1>adsrv</h1><span id="status">connecting…</span><span id="updated"></span></header>
<main>
<section class="cards">
  <div class="card"><div class="label">Requests / s</div><div class="value" id="rps-value">–</div></div>
  <div class="card"><div class="label">Fill rate</div><div class="value" id="fill-value">–</div></div>
  <div class="card"><div class="label">Latency p50 / p99</div><div class="value" id="latency-value">–</div></div>
  <div class="card"><div class="label">Catalog version</div><div class="value id" id="catalog-version">–</div><div class="sub" id="catalog-age"></div></div>
  <div class="card"><div class="label">Last sync</div><div class="value" id="last-sync">–</div><div class="sub" id="last-sync-detail"></div></div>
</section>
<section class="charts">
  <figure><figcaption>Requests per second</figcaption><canvas id="rps-chart" role="img" aria-label="requests per second"></canvas></figure>
  <figure><figcaption>Fill rate</figcaption><canvas id="fill-chart" role="img" aria-label="fill rate"></canvas></figure>
  <figure><figcaption>Request latency (ms)</figcaption><canvas id="latency-chart" role="img" aria-label="latency percentiles"></canvas></figure>
  <figure><figcaption>Served and impressions by country</figcaption><div class="note" id="served-note"></div><canvas class="bars" id="country-chart" role="img" aria-label="served by country"></canvas></figure>
  <figure><figcaption>Served and impressions by ad</figcaption><canvas class="bars" id="ad-chart" role="img" aria-label="served by ad"></canvas></figure>
  <figure><figcaption>Counters</figcaption><table id="counters"><tbody></tbody></table></figure>
</section>
<section class="card">
  <div class="catalog-head"><h2>Catalog</h2><input id="catalog-search" type="search" placeholder="Filter by id, country, language, URL" aria-label="filter the catalog"><span class="sub" id="catalog-count"></span></div>
  <div class="table-wrap"><table id="catalog-table">
    <thead><tr><th>ID</th><th>Country</th><th>Lang</th><th>Runs (UTC)</th><th class="num">Served</th><th class="num">Impressions</th><th>Video URL</th></tr></thead>
    <tbody></tbody>
  </table></div>
</section>
</main>
`;

function sha256Base64(text: string): string {
  return new Bun.CryptoHasher("sha256").update(text).digest("base64");
}

/** The page, ready to serve. */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>adsrv dashboard</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>${BODY}<script>${SCRIPT}</script>
</body>
</html>
`;

/** Admits only the inline script and style above (by hash), and fetches to this origin. */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  `script-src 'sha256-${sha256Base64(SCRIPT)}'`,
  `style-src 'sha256-${sha256Base64(STYLE)}'`,
  "connect-src 'self'",
  "img-src data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");
