// Per-endpoint charts from GET /webhooks/configs/{id}/stats (GetEndpointStats:
// 24 hourly buckets of attempts and failures, latency percentiles), drawn as
// inline SVG. Loaded when a card scrolls into view, at most every STATS_TTL_MS
// per endpoint, so a long list costs nothing until looked at.

import { api } from "./api.js";
import { h } from "./dom.js";

const STATS_TTL_MS = 30000;
const cache = new Map(); // config id -> {at, stats}
const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c);
  return el;
}

function hourLabel(iso) {
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// Attempts per hour (bars), failures in red within them.
export function activityChart(stats) {
  const buckets = stats.buckets || [];
  const max = Math.max(1, ...buckets.map((b) => Number(b.attempts || 0)));
  const width = 240;
  const height = 56;
  const step = width / Math.max(1, buckets.length);
  const attempts = Number(stats.attempts || 0);
  const failures = Number(stats.failures || 0);
  const busiest = buckets.reduce((best, b) => (Number(b.attempts || 0) > Number(best?.attempts || 0) ? b : best), null);
  const summary = attempts
    ? `Last 24 hours: ${attempts.toLocaleString()} attempts, ${failures.toLocaleString()} failed; busiest hour from ${hourLabel(busiest.start)} with ${Number(busiest.attempts).toLocaleString()}.`
    : "Last 24 hours: no attempts.";
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "activity", role: "img", "aria-label": summary, preserveAspectRatio: "none" });
  chart.append(svg("line", { x1: 0, y1: height - 0.5, x2: width, y2: height - 0.5, class: "axis" }));
  buckets.forEach((b, i) => {
    const n = Number(b.attempts || 0);
    const f = Number(b.failures || 0);
    const total = (n / max) * (height - 4);
    const bad = (f / max) * (height - 4);
    const x = i * step + 1;
    const w = Math.max(1, step - 2);
    const tip = svg("title", {});
    tip.textContent = `${hourLabel(b.start)}: ${n} attempts, ${f} failed`;
    const group = svg("g", { class: "hour" }, tip);
    group.append(svg("rect", { x, y: height - total, width: w, height: Math.max(total - bad, 0), class: "bar ok-bar" }));
    if (bad) group.append(svg("rect", { x, y: height - bad, width: w, height: bad, class: "bar bad-bar" }));
    if (!n) group.append(svg("rect", { x, y: height - 1.5, width: w, height: 1, class: "bar empty-bar" }));
    chart.append(group);
  });
  return { chart, summary };
}

// The latency percentiles as three labelled bars on one scale.
export function latencyChart(stats) {
  const values = [
    ["p50", Number(stats.latency_p50_ms || 0)],
    ["p90", Number(stats.latency_p90_ms || 0)],
    ["p99", Number(stats.latency_p99_ms || 0)],
  ];
  const max = Math.max(1, ...values.map(([, v]) => v));
  return h(
    "dl",
    { class: "latency", "aria-label": "Response time percentiles, last 24 hours" },
    values.map(([label, v]) => {
      const bar = h("span", { class: "latency-bar" });
      bar.style.width = `${Math.max(2, (100 * v) / max)}%`; // CSSOM: the CSP allows no style attribute
      return h("div", { class: "latency-row" }, h("dt", {}, label), h("dd", {}, bar, h("span", { class: "latency-value" }, `${v.toLocaleString()} ms`)));
    }),
  );
}

function draw(box, stats) {
  const { chart } = activityChart(stats);
  const quiet = !Number(stats.attempts || 0);
  box.removeAttribute("aria-busy");
  box.replaceChildren(
    h("div", { class: "chart-block" }, h("p", { class: "chart-title" }, "Attempts, last 24 hours", h("span", { class: "legend" }, h("span", { class: "key ok-key" }), "delivered ", h("span", { class: "key bad-key" }), "failed")), chart),
    h("div", { class: "chart-block" }, h("p", { class: "chart-title" }, "Response time"), quiet ? h("p", { class: "muted small" }, "No attempts in the last 24 hours.") : latencyChart(stats)),
  );
}

async function load(box, configId) {
  const hit = cache.get(configId);
  if (hit && Date.now() - hit.at < STATS_TTL_MS) return draw(box, hit.stats);
  try {
    const stats = await api("GET", `/webhooks/configs/${encodeURIComponent(configId)}/stats`);
    cache.set(configId, { at: Date.now(), stats });
    if (box.isConnected) draw(box, stats);
  } catch (err) {
    box.removeAttribute("aria-busy");
    box.replaceChildren(h("p", { class: "muted small" }, `Charts unavailable: ${err.message}`));
  }
}

const observer = "IntersectionObserver" in window
  ? new IntersectionObserver(
      (entries) => {
        for (const entry of entries) {
          if (!entry.isIntersecting) continue;
          observer.unobserve(entry.target);
          load(entry.target, entry.target.dataset.configId);
        }
      },
      { rootMargin: "600px 0px" }, // a screen ahead of the scroll
    )
  : null;

// The charts of one endpoint card: drawn from the cache at once when fresh, else loaded when seen.
export function endpointCharts(configId) {
  const box = h("div", { class: "charts", dataset: { configId }, "aria-busy": "true" }, h("p", { class: "muted small" }, "Charts load when shown…"));
  const hit = cache.get(configId);
  if (hit) draw(box, hit.stats);
  if (!hit || Date.now() - hit.at >= STATS_TTL_MS) {
    if (observer) observer.observe(box);
    else load(box, configId);
  }
  return box;
}

// After a change that adds attempts (a test event), the next draw loads again.
export function forgetStats(configId) {
  cache.delete(configId);
}
