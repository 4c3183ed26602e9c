// The dashboard's page: rows and figures from the processor's WebSocket feed (/feed),
// one chart per key (p50/p95/p99 of the measure and events per window over event time).
"use strict";
(() => {
  const MAX_CHARTS = 24;
  const LATEST = 30;
  const SERIES = [
    { name: "p50", stroke: "#2f6fdf" },
    { name: "p95", stroke: "#f08c00" },
    { name: "p99", stroke: "#d92d20" },
  ];

  const $ = (id) => document.getElementById(id);
  const keys = new Map(); // label -> { label, windows: Map(window_start -> row), li, card, plot }
  const dirty = new Set();
  let latest = [];
  let latestDirty = false;

  const integer = (n) => Math.round(n).toLocaleString("en-US");
  const number = (v) =>
    v == null ? "–" : Math.abs(v) >= 100 ? integer(v) : v.toFixed(2);
  const instant = (ms) => new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  const span = (ms) =>
    ms < 1000 ? `${ms} ms` : ms < 60000 ? `${(ms / 1000).toFixed(1)} s` : `${(ms / 60000).toFixed(1)} min`;
  const labelOf = (key) => Object.values(key).join(" · ") || "(all events)";
  const eventsOf = (k) => {
    let n = 0;
    for (const r of k.windows.values()) n += r.values.count ?? 0;
    return n;
  };

  function setFigure(id, value, text) {
    const el = $(id);
    el.dataset.value = value == null ? "" : String(value);
    el.textContent = text;
  }

  function onStats(s) {
    document.body.dataset.state = s.finished ? "finished" : "running";
    $("state").textContent = s.finished ? "input done · totals" : "running";
    setFigure("events", s.events, integer(s.events));
    setFigure("rate", Math.round(s.events_per_sec), s.finished ? "–" : integer(s.events_per_sec));
    setFigure("watermark", s.watermark, s.watermark == null ? "–" : instant(s.watermark).slice(11));
    $("watermark").title = s.watermark == null ? "" : instant(s.watermark);
    setFigure("lag", s.watermark_lag_ms, s.watermark_lag_ms == null ? "–" : span(s.watermark_lag_ms));
    setFigure("late", s.late, integer(s.late));
    setFigure("dead", s.dead_lettered, integer(s.dead_lettered));
    setFigure("rows", s.rows, integer(s.rows));
    setFigure("updates", s.updates, integer(s.updates));
  }

  function onRow(r) {
    const label = labelOf(r.key);
    let k = keys.get(label);
    if (!k) {
      k = { label, windows: new Map(), li: null, card: null, plot: null };
      keys.set(label, k);
    }
    for (const start of r.replaces || []) k.windows.delete(start);
    k.windows.set(r.window_start, r);
    dirty.add(k);
    latest.unshift(r);
    if (latest.length > LATEST) latest.length = LATEST;
    latestDirty = true;
  }

  function keyItem(k) {
    if (!k.li) {
      k.li = document.createElement("li");
      k.li.dataset.key = k.label;
      k.li.innerHTML = '<span class="k"></span><span class="n"></span>';
      k.li.querySelector(".k").textContent = k.label;
      $("keys").appendChild(k.li);
    }
    const n = eventsOf(k);
    k.li.dataset.events = String(n);
    k.li.querySelector(".n").textContent = `${integer(n)} events`;
  }

  function chartData(k) {
    const rows = [...k.windows.values()].sort((a, b) => a.window_start - b.window_start);
    const data = [rows.map((r) => r.window_start / 1000)];
    for (const s of SERIES) data.push(rows.map((r) => r.values[s.name] ?? null));
    data.push(rows.map((r) => r.values.count ?? null));
    return data;
  }

  function chart(k) {
    const charts = $("charts");
    if (!k.card) {
      if (charts.querySelectorAll(".card").length >= MAX_CHARTS) return;
      $("waiting")?.remove();
      k.card = document.createElement("div");
      k.card.className = "card";
      k.card.dataset.key = k.label;
      k.card.innerHTML = '<h3></h3><div class="plot"></div>';
      k.card.querySelector("h3").textContent = k.label;
      charts.appendChild(k.card);
      const width = k.card.querySelector(".plot").clientWidth || 420;
      k.plot = new uPlot(
        {
          width,
          height: 200,
          legend: { live: false },
          // Event time is UTC, as in the rows.
          tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
          scales: { x: { time: true }, n: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
          series: [
            {},
            ...SERIES.map((s) => ({ label: s.name, scale: "v", stroke: s.stroke, width: 1.5 })),
            { label: "events", scale: "n", stroke: "#12b76a", width: 1, dash: [4, 4], points: { show: true, size: 4 } },
          ],
          axes: [
            { values: (u, ticks) => ticks.map((t) => instant(t * 1000).slice(11, 16)) },
            { scale: "v", size: 56 },
            { scale: "n", side: 1, size: 44, grid: { show: false } },
          ],
        },
        chartData(k),
        k.card.querySelector(".plot"),
      );
      return;
    }
    k.plot.setData(chartData(k));
  }

  function renderLatest() {
    const body = $("latest").querySelector("tbody");
    body.replaceChildren(
      ...latest.map((r) => {
        const tr = document.createElement("tr");
        if (r.is_update) tr.className = "update";
        const cells = [
          instant(r.window_start).slice(11, 16),
          labelOf(r.key),
          integer(r.values.count ?? 0),
          number(r.values.p95),
          r.is_update ? "↻" : "",
        ];
        cells.forEach((text, i) => {
          const td = document.createElement("td");
          td.textContent = text;
          if (i === 1) td.className = "key";
          if (i === 2 || i === 3) td.className = "num";
          if (i === 4) {
            td.className = "badge";
            if (r.is_update) td.title = "an update: revises the row of this key and window";
          }
          tr.appendChild(td);
        });
        return tr;
      }),
    );
  }

  function render() {
    for (const k of dirty) {
      keyItem(k);
      chart(k);
    }
    dirty.clear();
    if (latestDirty) renderLatest();
    latestDirty = false;
  }
  setInterval(render, 250);

  window.addEventListener("resize", () => {
    for (const k of keys.values()) {
      if (k.plot) k.plot.setSize({ width: k.card.querySelector(".plot").clientWidth, height: 200 });
    }
  });

  function connect() {
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/feed`);
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      if (m.kind === "row") onRow(m);
      else if (m.kind === "stats") onStats(m);
      else if (m.kind === "snapshot") {
        if (m.description) $("description").textContent = m.description;
        latest = [];
        m.rows.forEach(onRow);
      }
    };
    ws.onclose = () => {
      if (document.body.dataset.state !== "finished") {
        document.body.dataset.state = "disconnected";
        $("state").textContent = "disconnected · retrying";
      }
      setTimeout(connect, 1000);
    };
  }
  connect();
})();
