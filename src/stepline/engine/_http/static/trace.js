// The run page's trace: the run, its steps, each attempt of a step, its waits (sleep,
// event, signal) and the child runs it invoked, as nested spans on one time axis.
// Drawn with positioned HTML bars (no library); a row's label opens its step below.
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

/**
 * The trace of a run.
 * @param run the run (GET v1/runs/{id})
 * @param steps its steps (GET v1/runs/{id}/steps)
 * @param attempts every attempt of the steps that failed once (GET v1/runs/{id}/attempts)
 * @param children the runs it invoked (GET v1/runs?parent_run_id=)
 */
export function trace(run, steps, attempts, children) {
  const now = Date.now();
  const end = (iso) => ms(iso) ?? now;
  const byStep = group(attempts);
  const starts = [ms(run.created_at), ms(run.run_started_at), ...steps.map((s) => ms(s.started_at)),
    ...attempts.map((a) => ms(a.started_at)), ...children.map((c) => ms(c.created_at))].filter((t) => t !== null);
  if (!starts.length) return h("p", { class: "empty", id: "trace" }, "Nothing to trace yet.");
  const t0 = Math.min(...starts);
  const ends = [TERMINAL.has(run.status) ? end(run.ended_at) : now,
    ...steps.filter((s) => s.started_at).map((s) => end(s.ended_at)),
    ...attempts.map((a) => Math.max(end(a.ended_at), ms(a.retry_at) ?? 0)),
    ...children.map((c) => (TERMINAL.has(c.status) ? end(c.ended_at) : now))];
  const t1 = Math.max(t0 + 1, ...ends);
  const axis = { t0, span: t1 - t0 };
  const rows = [row("run", h("span", { class: "trace-name" }, "Run"), [
    span(axis, ms(run.run_started_at) ?? ms(run.created_at), TERMINAL.has(run.status) ? end(run.ended_at) : now,
      `s-${run.status.toLowerCase()}`, `Run ${run.status}`),
  ], run.run_id)];
  const calls = byStep.get("step") || [];
  if (calls.length) rows.push(row("call", h("span", { class: "trace-name" }, "Function code"), attemptBars(axis, calls), null, 1));
  const placed = new Set();
  for (const step of steps) {
    const kind = kindOf(step);
    const tries = byStep.get(step.id) || [];
    const start = ms(step.started_at);
    const bars = [];
    if (start !== null) {
      const cls = tries.length ? "trace-envelope" : `s-${step.status.toLowerCase()}${kind === "step" ? "" : " trace-wait"}`;
      bars.push(span(axis, Math.min(start, ...tries.map((a) => ms(a.started_at) ?? start)), end(step.ended_at), cls, spanTitle(step, kind)));
    }
    bars.push(...attemptBars(axis, tries));
    rows.push(row(kind, label(step, kind), bars, step.id, 1));
    for (const child of children.filter((c) => c.parent_step_id === step.id)) {
      placed.add(child.run_id);
      rows.push(childRow(axis, child, now));
    }
  }
  for (const child of children.filter((c) => !placed.has(c.run_id))) rows.push(childRow(axis, child, now));
  return h("div", { class: "trace", id: "trace" }, ticks(axis), rows);
}

function group(attempts) {
  const found = new Map();
  for (const a of attempts) {
    if (!found.has(a.step_id)) found.set(a.step_id, []);
    found.get(a.step_id).push(a);
  }
  return found;
}

function row(kind, name, bars, stepId, depth = 0) {
  return h("div", { class: `trace-row depth-${depth}`, "data-kind": kind, "data-step": stepId || null },
    h("span", { class: "trace-label" }, name), h("span", { class: "trace-track" }, bars));
}

function label(step, kind) {
  const name = step.name || step.id;
  const open = () => {
    const el = document.querySelector(`#timeline details.step[data-step="${CSS.escape(step.id)}"]`);
    if (!el) return;
    el.open = true;
    el.scrollIntoView({ block: "center" });
  };
  return [h("span", { class: "trace-kind" }, KIND_LABEL[kind]), " ",
    h("button", { type: "button", class: "trace-name link", title: `Show step ${name}`, onclick: open }, name)];
}

/** A bar from `start` to `stop` (epoch ms) on the axis; at least a sliver wide. */
function span(axis, start, stop, cls, title) {
  const bar = h("span", { class: `trace-bar ${cls}`, title });
  bar.style.left = `${(100 * (start - axis.t0)) / axis.span}%`;
  bar.style.width = `${Math.max(0.4, (100 * (Math.max(stop, start) - start)) / axis.span)}%`;
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
  return row("child", [h("span", { class: "trace-kind" }, "run"), " ", link, " ", badge(child.status)],
    [span(axis, start, stop, `s-${child.status.toLowerCase()}`, `Child run ${child.run_id}: ${child.status}`)],
    null, 2);
}

function ticks(axis) {
  const marks = [0, 0.25, 0.5, 0.75, 1].map((f) => {
    const mark = h("span", { class: "trace-tick" }, f === 0 ? "0" : `+${duration(axis.span * f)}`);
    mark.style.left = `${100 * f}%`;
    return mark;
  });
  return h("div", { class: "trace-row trace-axis" }, h("span", { class: "trace-label muted" }, "Time"),
    h("span", { class: "trace-track" }, marks));
}
