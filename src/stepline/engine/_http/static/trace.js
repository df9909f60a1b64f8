// The run page's trace: the run, its steps, each attempt of a step, its waits (sleep,
// event, signal) and the child runs it invoked, as nested spans on one time axis.
// Drawn with positioned HTML bars (no library); a row's label opens its step in the side
// panel (panel.js). Long stretches where nothing runs (a sleep, a wait for an event or a
// signal, a retry's backoff, a run held in the queue) are drawn as a compressed break
// labelled with how long it lasted, so the steps around it keep their width. Steps planned
// together (run in parallel) are drawn in one group.
import { TERMINAL, badge, duration, enc, h, ms } from "./dom.js";

/** The kind of span a step draws as: a step, a sleep, a wait for an event or signal, an invoke. */
export function kindOf(step) {
  const wait = step.wait || {};
  if (wait.function_id) return "invoke";
  if (wait.signal) return "signal";
  if (wait.event) return "event";
  if (step.op === "Sleep" || wait.until) return "sleep";
  return "step";
}

const KIND_LABEL = { invoke: "invoke", signal: "signal", event: "event", sleep: "sleep", step: "step" };
/** A gap is compressed when it is this long and this share of the run's span at least. */
const BREAK_MIN_MS = 1000;
const BREAK_MIN_SHARE = 0.2;
/** The share of the track a compressed gap takes. */
const BREAK_SHARE = 0.06;

/**
 * The trace of a run.
 * @param run the run (GET v1/runs/{id})
 * @param steps its steps (GET v1/runs/{id}/steps)
 * @param attempts every attempt of the steps that failed once (GET v1/runs/{id}/attempts)
 * @param children the runs it invoked (GET v1/runs?parent_run_id=)
 * @param inspect called with (step id, the control clicked) to open a step in the panel
 */
export function trace(run, steps, attempts, children, inspect = () => {}) {
  const axis = axisOf(run, steps, attempts, children);
  if (!axis) return h("p", { class: "empty", id: "trace" }, "Nothing to trace yet.");
  const now = axis.now;
  const end = (iso) => ms(iso) ?? now;
  const byStep = group(attempts);
  const rows = [row(axis, "run", h("span", { class: "trace-name" }, "Run"), [
    span(axis, ms(run.run_started_at) ?? ms(run.created_at), TERMINAL.has(run.status) ? end(run.ended_at) : now,
      `s-${run.status.toLowerCase()}`, `Run ${run.status}`),
  ], run.run_id)];
  const calls = byStep.get("step") || [];
  if (calls.length) rows.push(row(axis, "call", h("span", { class: "trace-name" }, "Function code"), attemptBars(axis, calls), null, 1));
  const placed = new Set();
  const stepRows = (step) => {
    const kind = kindOf(step);
    const tries = byStep.get(step.id) || [];
    const start = ms(step.started_at);
    const bars = [];
    if (start !== null) {
      const cls = tries.length ? "trace-envelope" : `s-${step.status.toLowerCase()}${kind === "step" ? "" : " trace-wait"}`;
      bars.push(span(axis, Math.min(start, ...tries.map((a) => ms(a.started_at) ?? start)), end(step.ended_at), cls, spanTitle(step, kind)));
    }
    bars.push(...attemptBars(axis, tries));
    const out = [row(axis, kind, label(step, kind, inspect), bars, step.id, 1)];
    for (const child of children.filter((c) => c.parent_step_id === step.id)) {
      placed.add(child.run_id);
      out.push(childRow(axis, child, now));
    }
    return out;
  };
  const groups = parallelGroups(steps);
  const drawn = new Set();
  for (const step of steps) {
    if (drawn.has(step.id)) continue;
    const members = groups.get(step.id);
    if (!members) {
      rows.push(...stepRows(step));
      continue;
    }
    for (const m of members) drawn.add(m.id);
    const race = members.some((m) => m.mode === "race");
    const names = members.map((m) => m.name || m.id).join(", ");
    rows.push(h("div", { class: "trace-group", role: "group", "data-size": String(members.length), "aria-label": `In parallel: ${names}` },
      h("span", { class: "trace-group-label" }, `${race ? "race" : "parallel"} × ${members.length}`),
      members.map(stepRows)));
  }
  for (const child of children.filter((c) => !placed.has(c.run_id))) rows.push(childRow(axis, child, now));
  return h("div", { class: "trace", id: "trace" }, ticks(axis), rows);
}

/**
 * Steps planned together, by the id of each member: the steps one answer of the function
 * planned at once (the same start, to the millisecond) and that did not end that instant
 * (a step recorded as it was reported has no start of its own). Two at least.
 */
function parallelGroups(steps) {
  const byStart = new Map();
  for (const s of steps) {
    if (!s.started_at || s.started_at === s.ended_at) continue;
    if (!byStart.has(s.started_at)) byStart.set(s.started_at, []);
    byStart.get(s.started_at).push(s);
  }
  const found = new Map();
  for (const members of byStart.values()) {
    if (members.length < 2) continue;
    for (const m of members) found.set(m.id, members);
  }
  return found;
}

/**
 * The trace's time axis: where each time is drawn (`x(t)`, a fraction of the track), with
 * the long idle gaps compressed into breaks. Null when there is nothing to draw.
 */
export function axisOf(run, steps, attempts, children) {
  const now = Date.now();
  const end = (iso) => ms(iso) ?? now;
  const starts = [ms(run.created_at), ms(run.run_started_at), ...steps.map((s) => ms(s.started_at)),
    ...attempts.map((a) => ms(a.started_at)), ...children.map((c) => ms(c.created_at))].filter((t) => t !== null);
  if (!starts.length) return null;
  const t0 = Math.min(...starts);
  const ends = [TERMINAL.has(run.status) ? end(run.ended_at) : now,
    ...steps.filter((s) => s.started_at).map((s) => end(s.ended_at)),
    ...attempts.map((a) => Math.max(end(a.ended_at), ms(a.retry_at) ?? 0)),
    ...children.map((c) => (TERMINAL.has(c.status) ? end(c.ended_at) : now))];
  const t1 = Math.max(t0 + 1, ...ends);
  // what ran: code (steps, attempts, child runs) over its span, and every start and end
  const busy = [[ms(run.run_started_at) ?? t0, ms(run.run_started_at) ?? t0]];
  if (TERMINAL.has(run.status)) busy.push([end(run.ended_at), end(run.ended_at)]);
  const waits = [];
  for (const s of steps) {
    const start = ms(s.started_at);
    if (start === null) continue;
    const stop = end(s.ended_at);
    const kind = kindOf(s);
    if (kind === "step" && !(attempts.some((a) => a.step_id === s.id))) busy.push([start, stop]);
    else {
      busy.push([start, start], [stop, stop]);
      if (kind !== "step") waits.push({ start, stop, kind });
    }
  }
  for (const a of attempts) {
    const stop = ms(a.ended_at);
    if (stop !== null) busy.push([ms(a.started_at) ?? stop, stop]);
  }
  for (const c of children) busy.push([ms(c.run_started_at) ?? ms(c.created_at), TERMINAL.has(c.status) ? end(c.ended_at) : now]);
  return compress(t0, t1, busy, waits, ms(run.run_started_at), now);
}

function compress(t0, t1, busy, waits, started, now) {
  const span = t1 - t0;
  const merged = [];
  for (const [a, b] of busy.map(([a, b]) => [Math.max(t0, a), Math.min(t1, Math.max(a, b))]).sort((p, q) => p[0] - q[0])) {
    const last = merged[merged.length - 1];
    if (last && a <= last[1]) last[1] = Math.max(last[1], b);
    else merged.push([a, b]);
  }
  const gaps = [];
  let at = t0;
  for (const [a, b] of merged) {
    if (a > at) gaps.push([at, a]);
    at = Math.max(at, b);
  }
  if (t1 > at) gaps.push([at, t1]);
  const breaks = gaps.filter(([a, b]) => b - a >= BREAK_MIN_MS && b - a >= BREAK_MIN_SHARE * span);
  const share = breaks.length ? Math.min(BREAK_SHARE, 0.5 / breaks.length) : 0;
  // the stretches between breaks share the rest of the track by their length (a stretch
  // of instants gets a sliver, not nothing)
  const stretches = [];
  let from = t0;
  for (const [a, b] of breaks) {
    if (a > from) stretches.push([from, a]);
    stretches.push([a, b, true]);
    from = b;
  }
  if (t1 > from) stretches.push([from, t1]);
  const floor = span * 0.01;
  const weight = (s) => Math.max(s[1] - s[0], floor);
  const total = stretches.filter((s) => !s[2]).reduce((sum, s) => sum + weight(s), 0) || 1;
  const rest = 1 - share * breaks.length;
  const segments = [];
  let x = 0;
  for (const s of stretches) {
    const width = s[2] ? share : (rest * weight(s)) / total;
    segments.push({ t0: s[0], t1: s[1], x0: x, x1: x + width, gap: Boolean(s[2]) });
    x += width;
  }
  const last = segments[segments.length - 1];
  if (last) last.x1 = 1;
  const position = (t) => {
    const seg = segments.find((g) => t <= g.t1) || last;
    if (!seg) return 0;
    if (t <= seg.t0) return seg.x0;
    return seg.x0 + ((Math.min(t, seg.t1) - seg.t0) / (seg.t1 - seg.t0 || 1)) * (seg.x1 - seg.x0);
  };
  const time = (f) => {
    const seg = segments.find((g) => f <= g.x1) || last;
    return seg.t0 + ((f - seg.x0) / (seg.x1 - seg.x0 || 1)) * (seg.t1 - seg.t0);
  };
  const breakOf = (g) => ({ ...g, what: gapWhat(g, waits, started, now) });
  return { t0, t1, span, now, x: position, time, breaks: segments.filter((g) => g.gap).map(breakOf) };
}

/** What a compressed gap was: the wait spanning it, a retry's backoff, the queue. */
function gapWhat(gap, waits, started, now) {
  const mid = (gap.t0 + gap.t1) / 2;
  const wait = waits.find((w) => w.start <= mid && mid <= w.stop);
  if (wait) {
    const running = wait.stop >= now - 1;
    return { sleep: running ? "sleeping" : "slept", event: "waiting for an event", signal: "waiting for a signal",
      invoke: "waiting for the invoked run" }[wait.kind];
  }
  if (started === null || mid < started) return "queued";
  return "idle";
}

function group(attempts) {
  const found = new Map();
  for (const a of attempts) {
    if (!found.has(a.step_id)) found.set(a.step_id, []);
    found.get(a.step_id).push(a);
  }
  return found;
}

function row(axis, kind, name, bars, stepId, depth = 0) {
  return h("div", { class: `trace-row depth-${depth}`, "data-kind": kind, "data-step": stepId || null },
    h("span", { class: "trace-label" }, name), h("span", { class: "trace-track" }, breakBands(axis), bars));
}

/** The compressed gaps, as bands behind a track's bars. */
function breakBands(axis) {
  return axis.breaks.map((g) => {
    const band = h("span", { class: "trace-break", "aria-hidden": "true" });
    band.style.left = `${100 * g.x0}%`;
    band.style.width = `${100 * (g.x1 - g.x0)}%`;
    return band;
  });
}

function label(step, kind, inspect) {
  const name = step.name || step.id;
  const button = h("button", { type: "button", class: "trace-name link", title: `Inspect step ${name}` }, name);
  button.addEventListener("click", () => inspect(step.id, button));
  return [h("span", { class: "trace-kind" }, KIND_LABEL[kind]), " ", button];
}

/** A bar from `start` to `stop` (epoch ms) on the axis; at least a sliver wide. */
function span(axis, start, stop, cls, title) {
  const bar = h("span", { class: `trace-bar ${cls}`, title });
  const left = axis.x(start);
  bar.style.left = `${100 * left}%`;
  bar.style.width = `${Math.max(0.4, 100 * (axis.x(Math.max(stop, start)) - left))}%`;
  return bar;
}

function attemptBars(axis, tries) {
  const bars = [];
  for (const a of tries) {
    const stop = ms(a.ended_at);
    if (stop === null) continue;
    const start = ms(a.started_at) ?? stop;
    const failed = a.status === "Failed";
    const what = failed ? `failed: ${(a.error && (a.error.message || a.error.name)) || "error"}` : "succeeded";
    const bar = span(axis, start, stop, `trace-attempt ${failed ? "s-failed" : "s-completed"}`,
      `Attempt ${a.attempt} ${what} (${duration(a.duration_ms)})`);
    bar.dataset.attempt = String(a.attempt);
    bars.push(bar);
    const retry = ms(a.retry_at);
    if (retry !== null && retry > stop) {
      bars.push(span(axis, stop, retry, "trace-backoff", `Waited ${duration(retry - stop)} before attempt ${a.attempt + 1}`));
    }
  }
  return bars;
}

function spanTitle(step, kind) {
  const took = step.duration_ms === null ? "still going" : duration(step.duration_ms);
  return `${KIND_LABEL[kind]} ${step.name || step.id}: ${step.status} (${took})`;
}

function childRow(axis, child, now) {
  const stop = TERMINAL.has(child.status) ? ms(child.ended_at) ?? now : now;
  const start = ms(child.run_started_at) ?? ms(child.created_at);
  const link = h("a", { href: `#/runs/${enc(child.run_id)}`, class: "trace-child mono", title: child.run_id },
    child.function_id);
  return row(axis, "child", [h("span", { class: "trace-kind" }, "run"), " ", link, " ", badge(child.status)],
    [span(axis, start, stop, `s-${child.status.toLowerCase()}`, `Child run ${child.run_id}: ${child.status}`)],
    null, 2);
}

/** Where a break's label sits: its middle, or the track's end for a break that ends it. */
function anchor(gap) {
  if (gap.x1 >= 0.999) return 1;
  if (gap.x0 <= 0.001) return 0;
  return (gap.x0 + gap.x1) / 2;
}

function ticks(axis) {
  // no tick where a break's label sits
  const inBreak = (f) => axis.breaks.some((g) => Math.abs(f - anchor(g)) < 0.15);
  const marks = [0, 0.25, 0.5, 0.75, 1].filter((f) => f === 0 || !inBreak(f)).map((f) => {
    const at = axis.time(f) - axis.t0;
    const mark = h("span", { class: "trace-tick" }, f === 0 ? "0" : `+${duration(at)}`);
    mark.style.left = `${100 * f}%`;
    return mark;
  });
  const labels = axis.breaks.map((g) => {
    const text = `${duration(g.t1 - g.t0)} ${g.what}`;
    const mark = h("span", { class: "trace-break-label", title: `${text}: drawn compressed` }, `⋯ ${text}`);
    mark.style.left = `${100 * anchor(g)}%`;
    // near an end of the track the label grows inwards, not past the page's edge
    if (anchor(g) > 0.85) mark.style.transform = "translateX(-100%)";
    else if (anchor(g) < 0.15) mark.style.transform = "none";
    return mark;
  });
  return h("div", { class: "trace-row trace-axis" }, h("span", { class: "trace-label muted" }, "Time"),
    h("span", { class: "trace-track" }, breakBands(axis), marks, labels));
}
