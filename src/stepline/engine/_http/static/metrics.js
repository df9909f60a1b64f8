// A function's metrics as charts drawn in SVG (no chart library): runs started, runs
// ended (completed / failed / cancelled), failure rate, p50/p95 duration, queue depth and
// flow-control delay per time bucket, over the last hour, 6 hours, 24 hours or 7 days
// (GET v1/functions/{id}/metrics), and the queue as it is now. Unless the URL names a
// window, the engine picks the smallest that holds the function's whole history
// (window=auto), so a young deployment's runs spread over the bars; a line says which
// window is shown and why; for a function whose
// durable agents made model requests in the window, its tokens (input and output) and
// model requests per bucket, and per model (GET v1/functions/{id}/tokens). Each chart is a <figure>
// whose caption sums it up in words (the SVG's accessible name too); bars and points carry
// <title>s shown on hover.
import { api, duration, enc, fill, h, qs } from "./dom.js";

export const WINDOWS = [["1h", "Last hour"], ["6h", "Last 6 hours"], ["24h", "Last 24 hours"], ["7d", "Last 7 days"]];
const NS = "http://www.w3.org/2000/svg";
// live updates re-read the metrics this often at most (the page polls every 2 s; a week
// of buckets costs the engine more than a page of runs, and changes slowly)
const EVERY_MS = 10_000;
const W = 640, H = 190, LEFT = 56, RIGHT = 10, TOP = 10, BOTTOM = 24;
const HELD = {
  concurrency: "concurrency", throttled: "throttle", debounced: "debounce", batched: "batching",
  priority: "priority", paused: "function paused", other: "other",
};

/** The metrics section of a function's page: `{ el, refresh, window }` (refresh for live
 * updates; window: the one the person chose, null for the engine's pick, to keep across
 * a reload of the page). */
export function metricsSection(functionId, initial) {
  let chosen = WINDOWS.some(([w]) => w === initial) ? initial : null;
  const body = h("div", { class: "metrics-body", "aria-live": "polite" }, h("p", { class: "muted" }, "Loading metrics…"));
  const radios = WINDOWS.map(([value]) =>
    h("input", { type: "radio", name: "metrics-window", value, checked: value === chosen, onchange: () => choose(value) }));
  const picker = h("fieldset", { class: "metrics-window" },
    h("legend", {}, "Window"),
    WINDOWS.map(([, label], i) => h("label", {}, radios[i], " ", label)));
  const shown = h("p", { class: "muted small metrics-shown", id: "metrics-shown" });
  const el = h("section", { class: "metrics", id: "function-metrics" },
    h("div", { class: "metrics-head" }, h("h2", {}, "Metrics"), picker), shown, body);

  let fetchedAt = 0;
  /** Draw the chosen window's figures (at most every EVERY_MS unless `now`); a failure
   * shows in the section, not the page. */
  async function refresh(now = false) {
    if (!now && Date.now() - fetchedAt < EVERY_MS) return;
    fetchedAt = Date.now();
    const asked = chosen;
    try {
      const found = await api(`v1/functions/${enc(functionId)}/metrics?${qs({ window: asked || "auto" })}`);
      // tokens are an addition: the charts above are drawn without them if they fail; they
      // are asked for the window the metrics took (the engine's pick when none was chosen)
      const tokens = await api(`v1/functions/${enc(functionId)}/tokens?${qs({ window: found.data.window })}`).catch(() => null);
      if (asked !== chosen) return;
      for (const radio of radios) radio.checked = radio.value === found.data.window;
      fill(shown, shownText(found.data, asked));
      draw(body, found.data, tokens && tokens.data);
    } catch (error) {
      if (asked === chosen) fill(body, h("p", { class: "notice error" }, `Could not load metrics: ${error.message}`));
    }
  }
  function choose(value) {
    chosen = value;
    const [path] = location.hash.split("?");
    history.replaceState(null, "", `${path}?${qs({ window: value })}`);
    return refresh(true);
  }
  return { el, refresh, window: () => chosen };
}

/** Which window the charts show, in how many bars of what, and whether it was chosen. */
function shownText(m, chosen) {
  const [, label] = WINDOWS.find(([w]) => w === m.window) || [m.window, m.window];
  const why = chosen
    ? "as chosen above."
    : "the smallest window that holds all of this function's runs; choose another above.";
  return `Showing the ${label.toLowerCase()} in ${m.buckets.length} bars of ${bucketWords(m.bucket_seconds)}: ${why}`;
}

/** "1 minute", "10 minutes", "4 hours". */
function bucketWords(seconds) {
  const [size, unit] = seconds % 86400 === 0 ? [seconds / 86400, "day"] : seconds % 3600 === 0 ? [seconds / 3600, "hour"] : [seconds / 60, "minute"];
  return `${size} ${unit}${size === 1 ? "" : "s"}`;
}

function draw(body, m, tokens) {
  const b = m.buckets;
  const pct = (v) => `${(v * 100).toFixed(v > 0 && v < 0.1 ? 1 : 0)}%`;
  const ms = (v) => duration(v);
  fill(body,
    queueNow(m.queue),
    h("div", { class: "charts" },
      chart("started", "Runs started", m, [{ key: "started", label: "started", cls: "c-started" }], { kind: "bars" }),
      chart("ended", "Runs ended", m, [
        { key: "completed", label: "completed", cls: "c-ok" },
        { key: "failed", label: "failed", cls: "c-bad" },
        { key: "cancelled", label: "cancelled", cls: "c-warn" },
      ], { kind: "stacked" }),
      chart("failure-rate", "Failure rate", m, [{ key: "failure_rate", label: "failure rate", cls: "c-bad" }],
        { kind: "line", format: pct, max: 1, note: "failed ÷ (completed + failed)" }),
      chart("duration", "Run duration", m, [
        { key: "duration_p50_ms", label: "p50", cls: "c-p50" },
        { key: "duration_p95_ms", label: "p95", cls: "c-p95" },
      ], { kind: "line", format: ms, note: "first call to end, by end time" }),
      chart("queued", "Queue depth", m, [{ key: "queued", label: "runs waiting to start", cls: "c-queued" }],
        { kind: "bars", note: "at each bucket's end" }),
      chart("delay", "Flow-control delay", m, [
        { key: "delay_p50_ms", label: "p50", cls: "c-p50" },
        { key: "delay_p95_ms", label: "p95", cls: "c-p95" },
      ], { kind: "line", format: ms, note: "creation to first call: concurrency, throttle, debounce, batching, priority" }),
    ),
    totals(m.totals, b.length, pct, ms),
    tokens && tokens.totals.requests ? tokenCharts(tokens) : null,
  );
}

/** The window's model usage: tokens stacked input/output, requests, and per model. */
function tokenCharts(t) {
  const n = (v) => v.toLocaleString("en-US");
  const models = Object.entries(t.models);
  return h("section", { class: "metrics-tokens", id: "function-tokens" },
    h("h3", {}, "Tokens"),
    h("div", { class: "charts" },
      chart("tokens", "Tokens", t, [
        { key: "input_tokens", label: "input", cls: "c-input" },
        { key: "output_tokens", label: "output", cls: "c-output" },
      ], { kind: "stacked", format: n, note: "model requests' input and output tokens" }),
      chart("model-requests", "Model requests", t, [{ key: "requests", label: "model requests", cls: "c-started" }], { kind: "bars" }),
    ),
    h("p", { class: "muted small metrics-totals", id: "tokens-totals" },
      `Whole window: ${n(t.totals.total_tokens)} tokens (${n(t.totals.input_tokens)} input, ${n(t.totals.output_tokens)} output) `,
      `in ${n(t.totals.requests)} model requests`,
      models.length ? [`; per model: `, models.map(([model, u], i) => [i ? ", " : "", h("code", {}, model || "unnamed"), ` ${n(u.total_tokens)} tokens in ${n(u.requests)}`])] : null,
      "."));
}

function queueNow(q) {
  const held = Object.entries(q.held);
  return h("dl", { class: "queue-now", id: "queue-now" },
    h("dt", {}, "Queued runs"), h("dd", { "data-figure": "queued_runs" }, q.queued_runs),
    h("dt", {}, "Running"), h("dd", { "data-figure": "running_runs" }, q.running_runs),
    h("dt", {}, "Held by"), h("dd", { "data-figure": "held" },
      held.length ? held.map(([reason, n]) => h("span", { class: "chip", "data-reason": reason }, `${HELD[reason] || reason}: ${n}`)) : h("span", { class: "muted" }, "nothing")),
    h("dt", {}, "Jobs"), h("dd", { "data-figure": "jobs" },
      `${q.jobs.due} due (not leased) · ${q.jobs.running} leased · ${q.jobs.parked} parked · ${q.jobs.scheduled} scheduled`));
}

function totals(t, count, pct, ms) {
  const rate = t.failure_rate === null ? "no runs ended" : pct(t.failure_rate);
  return h("p", { class: "muted small metrics-totals" },
    `Whole window (${count} buckets): ${t.started} started, ${t.completed} completed, ${t.failed} failed, `,
    `${t.cancelled} cancelled; failure rate ${rate}; duration p50 ${ms(t.duration_p50_ms)}, p95 ${ms(t.duration_p95_ms)}; `,
    `flow-control delay p50 ${ms(t.delay_p50_ms)}, p95 ${ms(t.delay_p95_ms)}.`);
}

// -- one chart -----------------------------------------------------------------------------

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) el.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined && child !== false) el.append(child);
  }
  return el;
}

const title = (text) => svg("title", {}, text);

/** A chart of `series` over the buckets: bars, stacked bars or lines (gaps for nulls). */
function chart(id, heading, m, series, { kind, format = String, max, note }) {
  const buckets = m.buckets;
  const n = buckets.length;
  const value = (bucket, key) => bucket[key];
  const top = max ?? niceMax(Math.max(0, ...buckets.map((b) =>
    kind === "stacked" ? series.reduce((sum, s) => sum + value(b, s.key), 0) : Math.max(0, ...series.map((s) => value(b, s.key) ?? 0)))), kind !== "line");
  const plotW = W - LEFT - RIGHT, plotH = H - TOP - BOTTOM, step = plotW / n;
  const x = (i) => LEFT + i * step;
  const y = (v) => TOP + plotH - (top ? (v / top) * plotH : 0);
  const span = (i) => `${label(buckets[i].start, m.bucket_seconds, true)}–${label(end(buckets[i].start, m.bucket_seconds), m.bucket_seconds, true)}`;
  const marks = [];
  if (kind === "line") {
    for (const s of series) {
      const runs = [[]]; // runs of points between gaps (buckets without a value)
      buckets.forEach((b, i) => {
        const v = value(b, s.key);
        if (v === null || v === undefined) return void (runs.at(-1).length && runs.push([]));
        const cx = (x(i) + step / 2).toFixed(1), cy = y(v).toFixed(1);
        runs.at(-1).push(`${cx},${cy}`);
        marks.push(svg("circle", { class: `point ${s.cls}`, cx, cy, r: 3, "data-bucket": i, "data-start": b.start, "data-series": s.key, "data-value": v },
          title(`${span(i)}: ${s.label} ${format(v)}`)));
      });
      const d = runs.filter((r) => r.length).map((r) => `M${r.join(" L")}`).join(" ");
      if (d) marks.unshift(svg("path", { class: `line ${s.cls}`, d }));
    }
  } else {
    buckets.forEach((b, i) => {
      let base = 0;
      for (const s of series) {
        const v = value(b, s.key) ?? 0;
        if (v > 0) {
          marks.push(svg("rect", {
            class: `bar ${s.cls}`, x: (x(i) + step * 0.12).toFixed(1), width: Math.max(1, step * 0.76).toFixed(1),
            y: y(base + v).toFixed(1), height: Math.max(0.5, y(base) - y(base + v)).toFixed(1),
            "data-bucket": i, "data-start": b.start, "data-series": s.key, "data-value": v,
          }, title(`${span(i)}: ${format(v)} ${s.label}`)));
        }
        base += v;
      }
    });
  }
  const summary = describe(heading, buckets, series, kind, format, span);
  const labelled = `chart-${id}-caption`;
  const figure = h("figure", { class: "chart", "data-chart": id },
    h("figcaption", { id: labelled },
      h("strong", {}, heading), note ? h("span", { class: "muted small" }, ` (${note})`) : null, " ",
      legend(series, kind), h("span", { class: "chart-summary small" }, summary)));
  figure.prepend(svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": labelled, "data-chart": id },
    axes(top, format, buckets, m.bucket_seconds, x, y, step), marks));
  return figure;
}

function legend(series, kind) {
  if (series.length < 2 && kind !== "stacked") return null;
  return h("span", { class: "legend small" }, series.map((s) => h("span", { class: `key ${s.cls}` }, s.label)));
}

function axes(top, format, buckets, bucketSeconds, x, y, step) {
  const ticks = [0, top / 2, top].filter((v, i, all) => all.indexOf(v) === i);
  const every = Math.max(1, Math.ceil(buckets.length / 6));
  return svg("g", { class: "axes", "aria-hidden": "true" },
    ticks.map((v) => [
      svg("line", { class: "grid", x1: LEFT, x2: W - RIGHT, y1: y(v).toFixed(1), y2: y(v).toFixed(1) }),
      svg("text", { class: "tick", x: LEFT - 6, y: (y(v) + 4).toFixed(1), "text-anchor": "end" }, top ? format(v) : "0"),
    ]),
    svg("line", { class: "axis", x1: LEFT, x2: W - RIGHT, y1: y(0), y2: y(0) }),
    buckets.map((b, i) => (i % every ? null : svg("text", { class: "tick", x: (x(i) + step / 2).toFixed(1), y: H - 6, "text-anchor": "middle" },
      label(b.start, bucketSeconds, false)))));
}

/** In words: total or range, and the peak with its time. */
function describe(heading, buckets, series, kind, format, span) {
  const parts = series.map((s) => {
    const values = buckets.map((b, i) => [b[s.key], i]).filter(([v]) => v !== null && v !== undefined);
    if (!values.length) return `${s.label}: no data`;
    const [peak, at] = values.reduce((a, c) => (c[0] > a[0] ? c : a));
    if (kind !== "line" && !peak) return `${s.label}: none`;
    if (kind !== "line") {
      const total = values.reduce((sum, [v]) => sum + v, 0);
      return `${s.label}: ${heading === "Queue depth" ? `now ${values[values.length - 1][0]}` : `${total} in all`}, peak ${format(peak)} at ${span(at)}`;
    }
    return `${s.label}: highest ${format(peak)} at ${span(at)}`;
  });
  return `${parts.join("; ")}.`;
}

/** The axis' top: a round number at or above `v` (even for small counts: whole ticks). */
function niceMax(v, counts) {
  if (v <= 0) return 0;
  if (counts && v <= 10) return v % 2 ? v + 1 : v;
  const magnitude = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 4, 5, 10].map((f) => f * magnitude).find((c) => c >= v);
}

const end = (iso, seconds) => new Date(new Date(iso).getTime() + seconds * 1000).toISOString();
const pad = (n) => String(n).padStart(2, "0");

/** A bucket edge in local time: 14:05, or 11/23 14:00 where buckets span hours (the
 * axis: days); `hover` for a bar's title, which names the day sooner. */
function label(iso, bucketSeconds, hover) {
  const d = new Date(iso);
  const clock = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return bucketSeconds >= (hover ? 1800 : 14400) ? `${d.getMonth() + 1}/${d.getDate()} ${clock}` : clock;
}
