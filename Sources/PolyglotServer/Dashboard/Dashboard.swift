// The dashboard: one page, its style and its script, compiled into the binary. Nothing is fetched from the
// network but this server's own JSON (/v1/status, /v1/advice); charts are SVG drawn by the script.
enum Dashboard {
    static let html = #"""
    <!doctype html>
    <html lang="en">
    <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>Polyglot</title>
    <link rel="icon" href="data:,">
    <link rel="stylesheet" href="/dashboard.css">
    </head>
    <body>
    <header>
      <div class="brand"><span class="logo">◆</span> Polyglot <span class="muted" id="version"></span></div>
      <div class="status"><span id="live" class="dot"></span><span id="updated" class="muted">connecting…</span></div>
    </header>
    <div id="keybar" class="keybar hidden">
      <span>This server requires an API key with <code>*:admin</code>.</span>
      <input id="keyinput" type="password" placeholder="pk_…" autocomplete="off">
      <button id="keysave">Use key</button>
      <span id="keyerror" class="bad"></span>
    </div>
    <main>
      <section class="card wide" id="map-card">
        <h2>Data map <span class="muted small">datasets → engines → projections</span></h2>
        <div id="map"></div>
      </section>
      <section class="card" id="engines-card">
        <h2>Engine health</h2>
        <div id="engines" class="tiles"></div>
      </section>
      <section class="card" id="cache-card">
        <h2>Cache hit rate <span class="muted small">target ≥ 80%</span></h2>
        <div id="caches"></div>
      </section>
      <section class="card wide" id="datasets-card">
        <h2>Datasets <span class="muted small">since start · latency per operation</span></h2>
        <table id="datasets-table"><thead><tr><th>dataset</th><th>model</th><th>engine</th><th class="num">ops</th><th class="num">errors</th><th class="num">p50</th><th class="num">p99</th><th>operation mix</th></tr></thead><tbody></tbody></table>
      </section>
      <section class="card wide" id="charts-card">
        <h2>Over time <span class="muted small" id="window-note"></span></h2>
        <div id="legend" class="legend"></div>
        <div id="charts" class="charts"></div>
      </section>
      <section class="card wide" id="projections-card">
        <h2>Projections <span class="muted small">checkpoint, lag and dead letters</span></h2>
        <table id="projections-table"><thead><tr><th>dataset</th><th>projection</th><th>engine</th><th>kept by</th><th class="num">checkpoint</th><th class="num">lag (events)</th><th class="num">dead letters</th><th>state</th></tr></thead><tbody></tbody></table>
      </section>
      <section class="card wide advisor" id="advice-card">
        <h2>Advisor <span class="muted small">recommendations with their evidence</span></h2>
        <div id="advice"><p class="empty">no advice yet</p></div>
      </section>
    </main>
    <script src="/dashboard.js"></script>
    </body>
    </html>
    """#

    static let style = #"""
    :root { --bg:#0f1420; --card:#171e2e; --line:#263048; --text:#e6ebf5; --muted:#8b96ad; --ok:#3ecf8e; --bad:#ff6b6b; --warn:#f5b83d;
            --a:#5b9dff; --b:#c084fc; --c:#3ecf8e; --d:#f5b83d; --e:#ff8fa3; --f:#4dd4e6; }
    * { box-sizing: border-box; }
    body { margin:0; background:var(--bg); color:var(--text); font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; }
    header { display:flex; justify-content:space-between; align-items:center; padding:14px 24px; border-bottom:1px solid var(--line); }
    .brand { font-size:18px; font-weight:650; letter-spacing:.2px; } .logo { color:var(--a); }
    .muted { color:var(--muted); font-weight:400; } .small { font-size:12px; }
    .status { display:flex; gap:8px; align-items:center; }
    .dot { width:9px; height:9px; border-radius:50%; background:var(--muted); display:inline-block; }
    .dot.on { background:var(--ok); box-shadow:0 0 8px var(--ok); } .dot.off { background:var(--bad); }
    main { display:grid; grid-template-columns:repeat(2, minmax(0,1fr)); gap:16px; padding:16px 24px 32px; max-width:1500px; margin:0 auto; }
    .card { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:14px 16px; min-width:0; }
    .card.wide { grid-column:1 / -1; }
    h2 { font-size:14px; margin:0 0 12px; font-weight:600; text-transform:uppercase; letter-spacing:.6px; }
    h2 .small { text-transform:none; letter-spacing:0; margin-left:6px; }
    table { width:100%; border-collapse:collapse; font-variant-numeric:tabular-nums; }
    th { text-align:left; color:var(--muted); font-weight:500; font-size:12px; padding:6px 8px; border-bottom:1px solid var(--line); }
    td { padding:7px 8px; border-bottom:1px solid #1e2638; } tr:last-child td { border-bottom:0; }
    .num { text-align:right; }
    .tiles { display:grid; grid-template-columns:repeat(auto-fill,minmax(150px,1fr)); gap:10px; }
    .tile { border:1px solid var(--line); border-radius:8px; padding:10px 12px; }
    .tile .name { font-weight:600; } .tile .kind { color:var(--muted); font-size:12px; }
    .tile .big { font-size:20px; font-weight:600; margin-top:4px; }
    .ok { color:var(--ok); } .bad { color:var(--bad); } .warn { color:var(--warn); }
    .badge { display:inline-block; padding:1px 7px; border-radius:10px; font-size:11px; border:1px solid var(--line); color:var(--muted); }
    .mix { display:flex; height:10px; border-radius:5px; overflow:hidden; min-width:120px; background:#1e2638; }
    .mix span { display:block; height:100%; }
    .charts { display:grid; grid-template-columns:repeat(auto-fill,minmax(420px,1fr)); gap:14px; }
    .chart { border:1px solid var(--line); border-radius:8px; padding:8px 10px; }
    .chart h3 { margin:0 0 4px; font-size:13px; font-weight:600; }
    .legend { display:flex; flex-wrap:wrap; gap:14px; margin-bottom:10px; color:var(--muted); font-size:12px; }
    .legend i { display:inline-block; width:10px; height:10px; border-radius:2px; margin-right:5px; vertical-align:-1px; }
    svg text { fill:var(--muted); font-size:11px; }
    .cache { display:flex; gap:18px; align-items:center; margin-bottom:10px; }
    .cache .big { font-size:30px; font-weight:650; }
    .empty { color:var(--muted); font-style:italic; margin:6px 0; }
    .advice-item { border-left:3px solid var(--a); padding:6px 10px; margin:8px 0; }
    .keybar { display:flex; gap:10px; align-items:center; padding:10px 24px; background:#2a1f10; border-bottom:1px solid var(--warn); }
    .keybar input { background:var(--bg); color:var(--text); border:1px solid var(--line); border-radius:6px; padding:5px 8px; width:320px; }
    .keybar button { background:var(--a); color:#fff; border:0; border-radius:6px; padding:6px 12px; cursor:pointer; }
    .hidden { display:none; }
    code { background:#0b0f18; padding:1px 5px; border-radius:4px; }
    @media (max-width: 900px) { main { grid-template-columns:1fr; } .charts { grid-template-columns:1fr; } }
    """#

    static let script = #"""
    "use strict";
    const COLORS = ["#5b9dff", "#c084fc", "#3ecf8e", "#f5b83d", "#ff8fa3", "#4dd4e6", "#a3e635", "#fb923c"];
    const $ = (id) => document.getElementById(id);
    const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
    const svgNS = "http://www.w3.org/2000/svg";
    let key = sessionStorage.getItem("polyglot-key") || "";
    const opColor = {};
    function colorFor(op) { if (!(op in opColor)) opColor[op] = COLORS[Object.keys(opColor).length % COLORS.length]; return opColor[op]; }

    function fmtMs(ms) {
      if (ms == null || isNaN(ms)) return "–";
      if (ms === 0) return "0";
      if (ms < 1) return (ms * 1000).toFixed(ms < 0.01 ? 1 : 0) + " µs";
      if (ms < 100) return ms.toFixed(2) + " ms";
      return ms.toFixed(0) + " ms";
    }
    function fmtN(n) { return n >= 1e6 ? (n / 1e6).toFixed(1) + "M" : n >= 1e4 ? (n / 1e3).toFixed(1) + "k" : String(Math.round(n)); }

    async function get(path) {
      const headers = key ? { "Authorization": "Bearer " + key } : {};
      const r = await fetch(path, { headers, cache: "no-store" });
      if (r.status === 401 || r.status === 403) { const p = await r.json(); throw { auth: true, detail: p.detail }; }
      if (!r.ok) throw new Error(path + ": " + r.status);
      return r.json();
    }

    function el(tag, attrs, parent) {
      const e = document.createElementNS(svgNS, tag);
      for (const k in attrs) e.setAttribute(k, attrs[k]);
      if (parent) parent.appendChild(e);
      return e;
    }

    // Data map: three columns, datasets → engines → projections, drawn as SVG boxes and curves.
    function drawMap(status) {
      const map = status.map, health = {};
      for (const e of status.engines) health[e.name] = e;
      const projections = status.projections;
      const rowH = 40, boxH = 30, colW = 220;
      const rows = Math.max(map.datasets.length, map.engines.length, projections.length, 1);
      const width = 1000, height = rows * rowH + 30;
      const svg = document.createElementNS(svgNS, "svg");
      svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
      svg.setAttribute("width", "100%");
      svg.setAttribute("id", "map-svg");
      const xs = [20, (width - colW) / 2, width - colW - 20];
      ["datasets", "engines", "projections"].forEach((t, i) => { const h = el("text", { x: xs[i], y: 12 }, svg); h.textContent = t.toUpperCase(); });
      const pos = (i, n) => 24 + i * rowH + (rows - n) * rowH / 2;
      const dsY = {}, enY = {};
      map.engines.forEach((e, i) => { enY[e.name] = pos(i, map.engines.length); });
      map.datasets.forEach((d, i) => { dsY[d.name] = pos(i, map.datasets.length); });
      const curve = (x1, y1, x2, y2, color, dash) => {
        const mx = (x1 + x2) / 2;
        el("path", { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, fill: "none", stroke: color, "stroke-width": 1.6, "stroke-dasharray": dash || "", opacity: 0.8 }, svg);
      };
      map.datasets.forEach((d) => { if (enY[d.engine] != null) curve(xs[0] + colW, dsY[d.name] + boxH / 2, xs[1], enY[d.engine] + boxH / 2, "#5b9dff"); });
      projections.forEach((p, i) => {
        const y = pos(i, projections.length);
        const src = map.datasets.find((d) => d.name === p.dataset);
        if (src && enY[src.engine] != null) curve(xs[1] + colW, enY[src.engine] + boxH / 2, xs[2], y + boxH / 2, p.mode === "relay" ? "#f5b83d" : "#c084fc", p.mode === "relay" ? "5 4" : "");
      });
      const box = (x, y, title, sub, stroke, id) => {
        const g = el("g", { "data-node": id }, svg);
        el("rect", { x, y, width: colW, height: boxH, rx: 7, fill: "#0f1420", stroke, "stroke-width": 1.5 }, g);
        const t = el("text", { x: x + 10, y: y + 19, style: "fill:#e6ebf5;font-size:13px;font-weight:600" }, g); t.textContent = title;
        const s = el("text", { x: x + colW - 10, y: y + 19, "text-anchor": "end" }, g); s.textContent = sub;
      };
      map.datasets.forEach((d) => box(xs[0], dsY[d.name], d.name, d.model, "#5b9dff", "dataset:" + d.name));
      map.engines.forEach((e) => {
        const h = health[e.name];
        box(xs[1], enY[e.name], e.name, e.kind + (h ? (h.ok ? " · " + fmtMs(h.latencyMs) : " · DOWN") : ""), h && !h.ok ? "#ff6b6b" : "#3ecf8e", "engine:" + e.name);
      });
      projections.forEach((p, i) => box(xs[2], pos(i, projections.length), p.dataset + " · " + p.kind, "on " + p.engine, p.mode === "relay" ? "#f5b83d" : "#c084fc", "projection:" + p.dataset + ":" + p.kind));
      const holder = $("map"); holder.innerHTML = ""; holder.appendChild(svg);
    }

    function drawEngines(status) {
      $("engines").innerHTML = status.engines.map((e) => `
        <div class="tile" id="engine-${esc(e.name)}" data-ok="${e.ok}">
          <div class="name">${esc(e.name)} <span class="kind">${esc(e.kind)}</span></div>
          <div class="big ${e.ok ? "ok" : "bad"}">${e.ok ? "● up" : "● down"}</div>
          <div class="muted small">probe ${fmtMs(e.latencyMs)}${e.error ? " · " + esc(e.error) : ""}</div>
        </div>`).join("");
    }

    function drawCaches(status) {
      if (!status.caches.length) { $("caches").innerHTML = `<p class="empty">no cache engine in this data map</p>`; return; }
      $("caches").innerHTML = status.caches.map((c) => {
        const rate = c.hitRate == null ? null : c.hitRate * 100;
        const cls = rate == null ? "muted" : rate >= 80 ? "ok" : rate >= 50 ? "warn" : "bad";
        const points = status.series.map((p) => (p.caches[c.engine] || {}).hitRate).map((v) => (v == null ? null : v * 100));
        return `<div class="cache" id="cache-${esc(c.engine)}">
          <div><div class="muted small">${esc(c.engine)}</div><div class="big ${cls}" data-testid="hit-rate">${rate == null ? "–" : rate.toFixed(1) + "%"}</div></div>
          <div class="muted small">${fmtN(c.hits)} hits · ${fmtN(c.misses)} misses<br>${fmtN(c.entries)} entries · ${fmtN(c.evictions)} evictions · ${fmtN(c.invalidations)} invalidations${c.degraded ? '<br><span class="bad">degraded</span>' : ""}</div>
          </div>` + lineChart([{ name: "hit rate %", color: "#3ecf8e", values: points }], { height: 90, max: 100, target: 80, unit: "%" });
      }).join("");
    }

    function mixBar(ops) {
      const total = Object.values(ops).reduce((a, b) => a + b, 0);
      if (!total) return `<span class="muted small">idle</span>`;
      return `<div class="mix" title="${esc(Object.entries(ops).map(([k, v]) => k + " " + v).join(", "))}">` +
        Object.entries(ops).sort().map(([op, n]) => `<span style="width:${(n / total) * 100}%;background:${colorFor(op)}"></span>`).join("") + `</div>`;
    }

    function drawDatasets(status) {
      $("datasets-table").querySelector("tbody").innerHTML = status.datasets.map((d) => `
        <tr data-dataset="${esc(d.name)}"><td class="name"><b>${esc(d.name)}</b></td><td><span class="badge">${esc(d.model)}</span></td><td>${esc(d.engine)}</td>
        <td class="num" data-testid="count" data-value="${d.count}">${fmtN(d.count)}</td><td class="num ${d.errors ? "bad" : ""}">${fmtN(d.errors)}</td>
        <td class="num">${d.count ? fmtMs(d.p50Ms) : "–"}</td><td class="num">${d.count ? fmtMs(d.p99Ms) : "–"}</td><td>${mixBar(d.operations)}</td></tr>`).join("");
    }

    // A small SVG line chart over a fixed window of SLOTS samples, newest at the right edge.
    // series: [{name, color, values:[number|null]}]
    const SLOTS = 90;
    function lineChart(series, opts) {
      const w = 420, h = opts.height || 120, padL = 46, padB = 16, padT = 6;
      const n = Math.max(...series.map((s) => s.values.length), 1);
      const all = series.flatMap((s) => s.values.filter((v) => v != null));
      const max = opts.max || Math.max(...all, 0.001) * 1.15;
      const slots = Math.max(SLOTS, n);
      const x = (i) => padL + ((slots - n + i) / (slots - 1)) * (w - padL - 6);
      const y = (v) => padT + (1 - v / max) * (h - padT - padB);
      let out = `<svg viewBox="0 0 ${w} ${h}" width="100%">`;
      for (const f of [0, 0.5, 1]) {
        const v = max * f;
        out += `<line x1="${padL}" x2="${w - 6}" y1="${y(v)}" y2="${y(v)}" stroke="#263048"/>`;
        out += `<text x="${padL - 6}" y="${y(v) + 4}" text-anchor="end">${opts.unit === "%" ? v.toFixed(0) + "%" : fmtMs(v)}</text>`;
      }
      if (opts.target != null) out += `<line x1="${padL}" x2="${w - 6}" y1="${y(opts.target)}" y2="${y(opts.target)}" stroke="#f5b83d" stroke-dasharray="4 4"/>`;
      for (const s of series) {
        let d = "", pen = false;
        s.values.forEach((v, i) => { if (v == null) { pen = false; return; } d += (pen ? "L" : "M") + x(i).toFixed(1) + "," + y(v).toFixed(1); pen = true; });
        if (d) out += `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.8" stroke-linejoin="round"/>`;
        // The newest value as a dot, so a single sample shows too.
        for (let i = s.values.length - 1; i >= 0; i--) {
          if (s.values[i] != null) { out += `<circle cx="${x(i).toFixed(1)}" cy="${y(s.values[i]).toFixed(1)}" r="2.6" fill="${s.color}"/>`; break; }
        }
      }
      return out + `</svg>`;
    }

    // Stacked bars of operations per second in each window, same time axis as the line charts.
    function mixChart(points, name) {
      const w = 420, h = 90, padL = 46, padB = 4, padT = 4;
      const totals = points.map((p) => { const d = p.datasets[name]; return d ? d.count / (p.seconds || 1) : 0; });
      const max = Math.max(...totals, 1) * 1.1;
      const slots = Math.max(SLOTS, points.length);
      const bw = (w - padL - 6) / slots;
      const x0 = padL + (slots - points.length) * bw;
      let out = `<svg viewBox="0 0 ${w} ${h}" width="100%">`;
      out += `<line x1="${padL}" x2="${w - 6}" y1="${h - padB}" y2="${h - padB}" stroke="#263048"/>`;
      out += `<text x="${padL - 6}" y="${padT + 9}" text-anchor="end">${fmtN(max)}/s</text><text x="${padL - 6}" y="${h - padB}" text-anchor="end">0</text>`;
      points.forEach((p, i) => {
        const d = p.datasets[name]; if (!d) return;
        let yTop = h - padB;
        for (const [op, n] of Object.entries(d.operations).sort()) {
          const bh = ((n / (p.seconds || 1)) / max) * (h - padT - padB);
          yTop -= bh;
          out += `<rect x="${(x0 + i * bw).toFixed(1)}" y="${yTop.toFixed(1)}" width="${Math.max(bw - 1, 1).toFixed(1)}" height="${bh.toFixed(1)}" fill="${colorFor(op)}"><title>${esc(op)}: ${(n / (p.seconds || 1)).toFixed(1)}/s</title></rect>`;
        }
      });
      return out + `</svg>`;
    }

    function drawCharts(status) {
      const pts = status.series;
      const active = status.datasets.filter((d) => pts.some((p) => p.datasets[d.name] && p.datasets[d.name].count > 0));
      const span = pts.length ? Math.round(pts.reduce((a, p) => a + p.seconds, 0)) : 0;
      $("window-note").textContent = pts.length ? `last ${span}s, one point per ${status.server.sampleSeconds}s` : "collecting samples…";
      if (!active.length) { $("charts").innerHTML = `<p class="empty">no operations in the last ${span}s</p>`; $("legend").innerHTML = ""; return; }
      $("charts").innerHTML = active.map((d) => {
        const v = (f) => pts.map((p) => { const w = p.datasets[d.name]; return w && w.count > 0 ? w[f] : null; });
        return `<div class="chart" data-chart="${esc(d.name)}"><h3>${esc(d.name)} <span class="muted small">p50 <span style="color:#5b9dff">━</span> p99 <span style="color:#c084fc">━</span></span></h3>` +
          lineChart([{ name: "p50", color: "#5b9dff", values: v("p50Ms") }, { name: "p99", color: "#c084fc", values: v("p99Ms") }], { height: 120 }) +
          `<div class="muted small">operations per second, by kind</div>` + mixChart(pts, d.name) + `</div>`;
      }).join("");
      $("legend").innerHTML = Object.keys(opColor).sort().map((op) => `<span><i style="background:${opColor[op]}"></i>${esc(op)}</span>`).join("");
    }

    function drawProjections(status) {
      const body = $("projections-table").querySelector("tbody");
      if (!status.projections.length) { body.innerHTML = `<tr><td colspan="8" class="empty">no projections in this data map</td></tr>`; return; }
      body.innerHTML = status.projections.map((p) => {
        const lag = p.lag == null ? "–" : fmtN(p.lag);
        const state = p.lastError ? `<span class="bad">${esc(p.lastError)}</span>` : p.mode === "relay" ? (p.leader ? `<span class="ok">leading</span>` : `<span class="muted">another relay leads</span>`) : `<span class="ok">in step</span>`;
        return `<tr data-projection="${esc(p.dataset + ":" + p.kind)}"><td><b>${esc(p.dataset)}</b></td><td>${esc(p.kind)}</td><td>${esc(p.engine)}</td><td>${esc(p.mode)}</td>
          <td class="num">${p.checkpoint == null ? "–" : fmtN(p.checkpoint)}</td><td class="num ${p.lag > 1000 ? "warn" : ""}">${lag}</td>
          <td class="num ${p.deadLetters ? "bad" : ""}">${p.deadLetters == null ? "–" : fmtN(p.deadLetters)}</td><td>${state}</td></tr>`;
      }).join("");
    }

    function drawAdvice(advice) {
      const recs = (advice && advice.recommendations) || [];
      if (!recs.length) { $("advice").innerHTML = `<p class="empty" data-testid="no-advice">no advice yet</p>`; return; }
      $("advice").innerHTML = recs.map((r) => `<div class="advice-item" data-rule="${esc(r.rule)}" data-dataset="${esc(r.dataset)}">
        <b>${esc(r.dataset === "*" ? "all datasets" : r.dataset)}: ${esc(r.action)}</b> <span class="muted small">${esc(r.kind)} · ${esc(r.confidence)} confidence</span>
        <div class="muted small">${(r.evidence || []).map((e) => esc(e.metric + ": " + e.value + (e.threshold ? " (" + (e.crossed ? "crosses " : "within ") + e.threshold + ")" : ""))).join(" · ")}</div>
        <div class="small">${esc(r.expectedEffect || "")}</div>
        ${r.dataMapDiff ? `<pre class="small">${esc(r.dataMapDiff)}</pre>` : ""}</div>`).join("");
    }

    async function refresh() {
      try {
        const status = await get("/v1/status");
        $("keybar").classList.add("hidden");
        $("version").textContent = "v" + status.server.version + (status.server.auth ? " · keys required" : " · open (loopback)");
        drawMap(status); drawEngines(status); drawCaches(status); drawDatasets(status); drawCharts(status); drawProjections(status);
        try { drawAdvice(await get("/v1/advice")); } catch (e) { drawAdvice(null); }
        $("live").className = "dot on";
        $("updated").textContent = "updated " + new Date().toLocaleTimeString();
        document.body.dataset.loaded = "true";
      } catch (e) {
        $("live").className = "dot off";
        if (e && e.auth) { $("keybar").classList.remove("hidden"); $("keyerror").textContent = key ? e.detail : ""; $("updated").textContent = "needs a key"; }
        else $("updated").textContent = "disconnected: " + (e && e.message ? e.message : e);
      }
    }

    $("keysave").addEventListener("click", () => { key = $("keyinput").value.trim(); sessionStorage.setItem("polyglot-key", key); refresh(); });
    refresh();
    setInterval(refresh, 2000);
    """#
}
