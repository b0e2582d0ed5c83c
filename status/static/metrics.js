// The charts page: asks /api/trace-metrics for the chosen window and draws each metric as
// inline SVG of its own (no library). Text only through textContent; SVG through
// createElementNS. When the trace store does not answer, the page says so.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#1a73e8", "#d93025", "#1e8e3e", "#f9ab00", "#9334e6", "#12b5cb", "#e8710a", "#80868b"];
const WINDOW_TEXT = { "1h": "the last hour", "24h": "the last 24 hours" };
const state = { window: "1h" };

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = String(text);
  return e;
}

// A round upper bound for an axis: 1, 2 or 5 times a power of ten.
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function fmt(v) {
  if (v === null || v === undefined) return "–";
  const a = Math.abs(v);
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a >= 1 || a === 0) return v.toFixed(a === 0 ? 0 : 2);
  return v.toPrecision(2);
}

function clock(epoch, withDay) {
  const d = new Date(epoch * 1000);
  const hm = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return withDay ? `${d.toLocaleDateString([], { month: "short", day: "numeric" })} ${hm}` : hm;
}

function legend(names) {
  const ul = el("ul", null, "legend");
  names.forEach((name, i) => {
    const li = el("li");
    const sw = el("span", null, "swatch");
    sw.style.background = COLORS[i % COLORS.length];
    li.append(sw, document.createTextNode(name));
    ul.append(li);
  });
  return ul;
}

function yAxis(root, box, max, unit) {
  for (const f of [0, 0.5, 1]) {
    const y = box.y + box.h - f * box.h;
    root.append(svg("line", { x1: box.x, x2: box.x + box.w, y1: y, y2: y, class: "grid" }));
    root.append(svg("text", { x: box.x - 6, y: y + 4, "text-anchor": "end", class: "tick-label y" }, fmt(f * max)));
  }
  root.append(svg("text", { x: 12, y: box.y + box.h / 2, "text-anchor": "middle", class: "axis-label",
    transform: `rotate(-90 12 ${box.y + box.h / 2})` }, unit));
}

function lineChart(chart, buckets, withDay) {
  const W = 540, H = 230, box = { x: 58, y: 12, w: W - 58 - 14, h: H - 12 - 44 };
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": chart.title, class: "plot" });
  let top = 0;
  for (const s of chart.series) for (const v of s.values) if (v !== null && v > top) top = v;
  const max = niceMax(top);
  yAxis(root, box, max, chart.unit);
  const n = Math.max(1, buckets.length - 1);
  const x = (i) => box.x + (i / n) * box.w;
  const y = (v) => box.y + box.h - (v / max) * box.h;
  for (let t = 0; t <= 4; t++) {
    const i = Math.round((t / 4) * n);
    root.append(svg("line", { x1: x(i), x2: x(i), y1: box.y + box.h, y2: box.y + box.h + 4, class: "axis" }));
    // the outer labels lean inwards so the plot's edges do not clip them
    const anchor = t === 0 ? "start" : t === 4 ? "end" : "middle";
    root.append(svg("text", { x: x(i), y: box.y + box.h + 17, "text-anchor": anchor, class: "tick-label x" },
      clock(buckets[i], withDay)));
  }
  root.append(svg("line", { x1: box.x, x2: box.x + box.w, y1: box.y + box.h, y2: box.y + box.h, class: "axis" }));
  root.append(svg("text", { x: box.x + box.w / 2, y: H - 6, "text-anchor": "middle", class: "axis-label" },
    "time (bucket start)"));
  chart.series.forEach((s, k) => {
    const color = COLORS[k % COLORS.length];
    let d = "", run = 0;
    s.values.forEach((v, i) => {
      if (v === null) { run = 0; return; }
      d += `${run === 0 ? "M" : "L"}${x(i).toFixed(1)} ${y(v).toFixed(1)} `;
      run++;
      const alone = (i === 0 || s.values[i - 1] === null) && (i === s.values.length - 1 || s.values[i + 1] === null);
      if (alone) root.append(svg("circle", { cx: x(i), cy: y(v), r: 2.5, fill: color, class: "point" }));
    });
    if (d) root.append(svg("path", { d: d.trim(), stroke: color, class: "series", "data-series": s.name }));
  });
  return [root, legend(chart.series.map((s) => s.name))];
}

function barChart(chart) {
  const W = 540, barH = 11, labelH = 15, gap = 8;
  const rowH = labelH + chart.legend.length * (barH + 2) + gap;
  const box = { x: 8, y: 6, w: W - 8 - 70 };
  const H = box.y + chart.groups.length * rowH + 40;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": chart.title, class: "plot" });
  let top = 0;
  for (const g of chart.groups) for (const v of g.values) if (v !== null && v > top) top = v;
  const max = niceMax(top);
  const w = (v) => (v / max) * box.w;
  chart.groups.forEach((g, r) => {
    const y0 = box.y + r * rowH;
    root.append(svg("text", { x: box.x, y: y0 + 11, class: "bar-label" }, g.label));
    g.values.forEach((v, k) => {
      const y = y0 + labelH + k * (barH + 2);
      if (v === null) return;
      root.append(svg("rect", { x: box.x, y, width: Math.max(1, w(v)).toFixed(1), height: barH,
        fill: COLORS[k % COLORS.length], class: "bar", "data-legend": chart.legend[k] }));
      root.append(svg("text", { x: box.x + Math.max(1, w(v)) + 4, y: y + barH - 1, class: "tick-label value" },
        fmt(v)));
    });
  });
  const base = box.y + chart.groups.length * rowH;
  root.append(svg("line", { x1: box.x, x2: box.x + box.w, y1: base, y2: base, class: "axis" }));
  for (const f of [0, 0.5, 1]) {
    root.append(svg("text", { x: box.x + f * box.w, y: base + 14, "text-anchor": f === 0 ? "start" : "middle",
      class: "tick-label x" }, fmt(f * max)));
  }
  root.append(svg("text", { x: box.x + box.w / 2, y: base + 32, "text-anchor": "middle", class: "axis-label" },
    chart.unit));
  return [root, legend(chart.legend)];
}

function render(doc) {
  const box = $("charts");
  box.replaceChildren();
  const withDay = doc.window === "24h";
  for (const chart of doc.charts) {
    const fig = el("figure", null, "chart");
    fig.dataset.chart = chart.id;
    fig.append(el("figcaption", `${chart.title} (${chart.unit})`));
    const empty = chart.kind === "bar" ? chart.groups.length === 0 : chart.series.length === 0;
    fig.dataset.empty = String(empty);
    if (empty) {
      fig.append(el("p", `No traces for this in ${WINDOW_TEXT[doc.window]}.`, "empty note"));
    } else {
      fig.append(...(chart.kind === "bar" ? barChart(chart) : lineChart(chart, doc.buckets, withDay)));
    }
    box.append(fig);
  }
}

async function load() {
  const w = state.window;
  let r;
  try {
    r = await api("/api/trace-metrics?window=" + encodeURIComponent(w));
  } catch (err) {
    if (!(err instanceof NeedsToken)) showProblem(`the status service did not answer: ${err.message}`);
    return;
  }
  if (w !== state.window) return;  // the toggle moved on while this was asked
  const doc = r.data || {};
  if (!r.ok || doc.available !== true) {
    showProblem(doc.error || `HTTP error`);
    return;
  }
  $("charts-status").hidden = true;
  $("charts").dataset.state = "available";
  $("charts").dataset.window = doc.window;
  $("generated-at").textContent = doc.generated_at ? new Date(doc.generated_at).toLocaleString() : "–";
  $("bucket-note").textContent = `${doc.bucket_s / 60}-minute buckets`;
  render(doc);
}

function showProblem(text) {
  const p = $("charts-status");
  p.textContent = text;
  p.hidden = false;
  $("charts").dataset.state = "unavailable";
  $("generated-at").textContent = "not answering";
  $("charts").replaceChildren(el("p", "The charts come back when the trace store answers again; " +
    "the workers page and the failed-jobs page do not depend on it.", "note"));
}

for (const b of document.querySelectorAll("button.window")) {
  b.addEventListener("click", () => {
    state.window = b.dataset.window;
    for (const o of document.querySelectorAll("button.window")) {
      o.setAttribute("aria-pressed", String(o === b));
    }
    load();
  });
}
onTokenForm(load);

// The service keeps an answer 30 s: asking more often costs nothing but shows it sooner.
const every = Math.max(1, Number(new URLSearchParams(location.search).get("every")) || 30);
load();
setInterval(load, every * 1000);
