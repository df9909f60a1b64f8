// The run page: status, notices (non-determinism, version moves), flow-control holds,
// actions (cancel, rerun, export as a test: the run's journal as a file), the trace
// (trace.js: steps, attempts, waits and child runs on one time axis), the step timeline
// with outputs, errors, every attempt (attempts.js) and waits (a waiting event step can
// be resumed from here, a waiting signal step sent its signal), the run's signals
// (signals.js), the trigger events, the final output and the run's stream, live (the SSE
// form of v1/runs/{id}/stream; the browser resumes it). A run whose agent made model
// requests shows its tokens (tokens.js); a run of a conversation links to the
// conversation's runs (conversations.js). A step opens in the side panel (panel.js) from
// the trace or the timeline; the run's raw history (history.js) is under its output.
import {
  TERMINAL, api, badge, code, duration, enc, eventLink, facts, fill, functionLink, h, json,
  ms, notice, runDuration, runLink, time,
} from "./dom.js";
import { origin as originOf, replayFrom } from "./bulk.js";
import { eventForm, signalForm } from "./forms.js";
import { attemptsOf, attemptsTable, callAttempts } from "./attempts.js";
import { historySection } from "./history.js";
import { errorBox, inspectButton, stepPanel } from "./panel.js";
import { signalsSection } from "./signals.js";
import { axisOf, trace } from "./trace.js";
import { runTokens } from "./tokens.js";

export async function page(view, [runId], params, ctx) {
  const head = h("div");
  const actions = h("div", { class: "actions" });
  const message = h("div");
  const body = h("div");
  const tokens = runTokens(runId);
  const panel = stepPanel(runId, ctx, stepState);
  const history = historySection(runId);
  fill(view, h("div", { class: "run-page" }, head, actions, message, tokens.el, body, history.el,
    streamView(runId, ctx), panel.el));
  const open = new Set();
  let last = "";
  let ended = false;

  async function load() {
    const [run, steps, attempts] = await Promise.all([
      api(`v1/runs/${enc(runId)}`),
      api(`v1/runs/${enc(runId)}/steps`),
      api(`v1/runs/${enc(runId)}/attempts`),
    ]);
    // the runs it invoked: asked for only once it has invoked one
    const children = steps.data.some((s) => s.wait && s.wait.function_id)
      ? (await api(`v1/runs?parent_run_id=${enc(runId)}&limit=100`)).data : [];
    if (!ctx.alive()) return;
    ended = TERMINAL.has(run.data.status);
    fill(head, header(run.data)); // always: the duration of a running run moves on
    const key = JSON.stringify([run.data, steps.data, attempts.data, children]);
    if (key === last) return;
    last = key;
    if (body.childElementCount) {
      open.clear(); // keep the steps the user opened open across refreshes
      for (const el of body.querySelectorAll("details.step[open]")) open.add(el.dataset.step);
    }
    fill(actions, buttons(run.data, message, load, ctx));
    const inspect = (stepId, from) => panel.open(stepId, { where: "trace", stepId, el: from });
    fill(body, details(run.data, steps.data, open, message, { attempts: attempts.data, children, inspect, panel }));
    panel.refresh({ run: run.data, steps: steps.data, attempts: attempts.data, children });
    await Promise.all([
      tokens.refresh(steps.data), // usage is counted as steps are recorded: read it on a change
      history.refresh(),
    ]);
  }
  await load();
  if (params.get("step") && ctx.alive()) panel.open(params.get("step")); // a shared link
  return { poll: () => (ended ? null : load()) };
}

/** The messages the run publishes, as they are published (the newest 500 kept). */
function streamView(runId, ctx) {
  const rows = h("tbody", { id: "stream-rows" });
  const state = h("p", { class: "muted", id: "stream-state" }, "Nothing published yet.");
  const table = h("table", { class: "stream", id: "stream", hidden: true },
    h("thead", {}, h("tr", {}, ["Seq", "Topic", "Time", "Data"].map((x) => h("th", {}, x)))), rows);
  const source = new EventSource(`v1/runs/${enc(runId)}/stream`);
  const watch = setInterval(() => ctx.alive() || close(), 1000); // the page was left
  function close() {
    source.close();
    clearInterval(watch);
  }
  source.addEventListener("message", (e) => {
    const m = JSON.parse(e.data);
    table.hidden = false;
    state.hidden = true;
    rows.append(h("tr", { "data-seq": String(m.seq) },
      h("td", { class: "mono" }, String(m.seq)), h("td", {}, code(m.topic)),
      h("td", {}, time(new Date(m.at * 1000).toISOString())),
      h("td", {}, h("code", { class: "stream-data" }, JSON.stringify(m.data)))));
    while (rows.childElementCount > 500) rows.firstChild.remove();
  });
  source.addEventListener("end", () => {
    close();
    state.hidden = false;
    state.textContent = rows.childElementCount ? "The run has ended: its stream is complete." : "The run published nothing.";
  });
  return h("section", { id: "run-stream" }, h("h2", {}, "Stream"), table, state);
}

function header(run) {
  const origin = run.origin || "";
  const notices = run.notices || [];
  return [
    h("h1", {}, functionLink(run.function_id), " ", badge(run.status),
      [...new Set(notices.map(noticeLabel))].map((label) => [" ", noticeBadge(label, notices)])),
    facts([
      ["Run", h("span", { class: "mono", id: "run-id" }, run.run_id)],
      ["App", run.app_id],
      ["App version", run.app_version ? h("span", { class: "mono", id: "app-version" }, run.app_version) : null],
      ["Created", time(run.created_at)],
      ["Started", time(run.run_started_at)],
      ["Ended", run.ended_at ? time(run.ended_at) : null],
      ["Duration", runDuration(run)],
      ["Origin", originOf(run) || origin || null],
      ["Parent run", run.parent_run_id ? runLink(run.parent_run_id) : null],
      ["Cancelled because", run.cancel_reason],
      ["Conversation", conversationLink(run.attributes)],
      ["Attributes", attributeChips(run.attributes)],
    ]),
    notices.length ? h("div", { id: "notices" }, notices.map(noticeItem)) : null,
    run.waiting ? heldBack(run.waiting) : null,
  ];
}

/** A notice's badge text: known kinds get a word, any other kind shows as itself. */
function noticeLabel(n) {
  if (n.kind === "nondeterminism") return "non-deterministic";
  if (n.kind === "version_moved") return `moved to ${n.to}`;
  return String(n.kind || "notice");
}

function noticeBadge(label, notices) {
  const failed = notices.some((n) => noticeLabel(n) === label && n.policy === "fail");
  return h("span", { class: `badge notice-badge ${failed ? "s-failed" : "s-waiting"}` }, label);
}

const DIVERGED = [
  ["missing", "No longer reached"],
  ["reordered", "Reached in another order"],
  ["new", "Not in the history"],
];

function noticeItem(n) {
  const steps = n.kind === "nondeterminism"
    ? DIVERGED.filter(([key]) => (n[key] || []).length).map(([key, what]) =>
        h("p", { class: `notice-steps ${key}` }, `${what}: `,
          n[key].map((e, i) => [i ? ", " : "", h("code", { title: e.id }, e.name || e.id)])))
    : null;
  return h(
    "div",
    { class: "notice waiting run-notice", "data-kind": n.kind },
    noticeBadge(noticeLabel(n), [n]), " ", n.message || "",
    n.at ? [" (", time(new Date(n.at * 1000).toISOString()), ")"] : null,
    steps,
  );
}

const HELD = {
  throttled: "Throttled: the function's throttle is full; the run starts when a slot frees up",
  concurrency: "Waiting for a concurrency slot",
  debounced: "Debounced: waiting for more events before starting",
  batched: "Batching: collecting events before starting",
  priority: "Delayed by priority",
  paused: "Paused: its function is paused; the run goes on when it is resumed",
};

function heldBack(waiting) {
  return h(
    "p",
    { class: "notice waiting", id: "held-back" },
    HELD[waiting.reason] || `Held back (${waiting.reason})`,
    waiting.until ? [" until ", time(waiting.until)] : null,
    waiting.since ? [" since ", time(waiting.since)] : null,
    waiting.key ? [" — key ", code(waiting.key)] : null,
    waiting.max ? ` (${waiting.events || 0} of ${waiting.max} events)` : null,
  );
}

function buttons(run, message, reload, ctx) {
  async function act(what, path) {
    try {
      const result = await api(path, { method: "POST" });
      if (what === "rerun") ctx.navigate(`#/runs/${enc(result.data.run_id)}`);
      else {
        notice(message, "ok", `Run ${result.data.status.toLowerCase()}.`);
        await reload();
      }
    } catch (error) {
      notice(message, "error", `Could not ${what}: ${error.message}`);
    }
  }
  const rerun = h("button", { type: "button", id: "rerun", onclick: () => act("rerun", `v1/runs/${enc(run.run_id)}/rerun`) }, "Rerun");
  // the run's journal (stepline.run/1), saved as a file a test replays (TestEnv.replay);
  // the session cookie goes with the browser's own GET
  const exported = h("a", {
    id: "export-run", class: "button", href: `v1/runs/${enc(run.run_id)}/export?download=1`,
    download: `run-${run.run_id}.json`, title: "Download this run's journal, to replay it in a test",
  }, "Export as test");
  if (TERMINAL.has(run.status)) return [rerun, exported];
  const cancel = h("button", { type: "button", id: "cancel", class: "danger" }, "Cancel run…");
  const confirm = h(
    "span",
    { class: "confirm", hidden: true },
    "Cancel this run? ",
    h("button", { type: "button", id: "confirm-cancel", class: "danger", onclick: () => act("cancel", `v1/runs/${enc(run.run_id)}/cancel`) }, "Yes, cancel it"),
    h("button", { type: "button", onclick: () => ((confirm.hidden = true), (cancel.hidden = false)) }, "Keep running"),
  );
  cancel.addEventListener("click", () => ((confirm.hidden = false), (cancel.hidden = true)));
  return [cancel, confirm, rerun, exported];
}

function details(run, steps, open, message, { attempts, children, inspect, panel }) {
  return [
    h("h2", {}, "Trace"),
    trace(run, steps, attempts, children, inspect),
    h("h2", {}, "Timeline"),
    timeline(run, steps, open, message, attempts, panel),
    callAttempts(attempts),
    signalsSection(run, steps),
    h("h2", {}, run.events.length > 1 ? `Trigger events (${run.events.length})` : "Trigger event"),
    run.events.length
      ? run.events.map((e) =>
          h("details", { class: "event", open: run.events.length === 1 },
            // the link sits beside the summary, not in it: a summary holds no other control
            h("summary", {}, h("strong", {}, e.name), " ", e.ts ? time(new Date(e.ts).toISOString()) : null),
            h("p", { class: "small" }, "Event ", eventLink(e.id)),
            json(e.data)))
      : h("p", { class: "empty" }, "Started without an event."),
    h("h2", {}, "Output"),
    finalOutput(run),
  ];
}

function finalOutput(run) {
  if (!TERMINAL.has(run.status)) return h("p", { class: "muted" }, "The run has not finished.");
  if (run.status === "Failed") return errorBox(run.output);
  if (run.status === "Cancelled") return h("p", { class: "muted" }, run.cancel_reason || "Cancelled.");
  return h("div", { id: "run-output" }, json(run.output));
}

function timeline(run, steps, open, message, attempts, panel) {
  if (!steps.length) return h("p", { class: "empty" }, "No steps yet.");
  const startOf = (s) => ms(s.started_at);
  const ends = steps.map((s) => ms(s.ended_at) ?? Date.now());
  const axis = axisOf(run, steps, attempts, []); // the trace's axis: long gaps compressed
  return h(
    "div",
    { class: "timeline", id: "timeline" },
    h("div", { class: "step-row head" }, ["Step", "Op", "Status", "Attempts", "Started", "Duration", ""].map((x) => h("span", {}, x))),
    steps.map((s, i) => {
      const start = startOf(s);
      let bar = null; // a planned step has not started: no bar yet
      if (start !== null && axis) {
        bar = h("span", { class: `bar s-${s.status.toLowerCase()}` });
        const left = axis.x(start);
        bar.style.left = `${100 * left}%`;
        bar.style.width = `${Math.max(0.8, 100 * (axis.x(Math.max(start, ends[i])) - left))}%`;
      }
      // the Inspect button beside the row's <summary>, not in it: a summary holds no other control
      return h("div", { class: "step-item" }, h(
        "details",
        { class: "step", "data-step": s.id, open: open.has(s.id) },
        h(
          "summary",
          { class: "step-row" },
          h("span", { class: "step-name" }, s.name || s.id),
          h("span", { class: "step-kind" }, s.kind || s.op),
          h("span", {}, h("span", { class: `badge s-${s.status.toLowerCase()} step-state` }, stepState(s))),
          h("span", {}, String(s.attempts ?? "")),
          h("span", {}, time(s.started_at)),
          h("span", {}, s.duration_ms === null ? (s.started_at ? "…" : "—") : duration(s.duration_ms)),
          h("span", { class: "track" }, bar),
        ),
        stepBody(run, s, message, attemptsOf(attempts, s.id)),
      ), inspectButton(s, panel));
    }),
  );
}

/**
 * A step's state in words, as the CLI and the Django admin word it (stepline._api.step_state):
 * its status, or "Retrying at 14:03:12 (attempt 2 of 4)" (local time) for a planned step
 * that has failed an attempt.
 */
export function stepState(s) {
  if (s.status !== "Planned" || !(s.attempts >= 1)) return s.status;
  const number = `attempt ${s.attempts + 1}${s.max_attempts ? ` of ${s.max_attempts}` : ""}`;
  if (!s.next_retry_at) return `Retrying (${number})`;
  const at = new Date(s.next_retry_at);
  const clock = [at.getHours(), at.getMinutes(), at.getSeconds()].map((n) => String(n).padStart(2, "0")).join(":");
  return `Retrying at ${clock} (${number})`;
}

function stepBody(run, step, message, tries) {
  const wait = step.wait || {};
  const pending = !["Completed", "Failed", "Cancelled"].includes(step.status);
  return h(
    "div",
    { class: "step-body" },
    facts([
      ["Step id", h("span", { class: "mono" }, step.id)],
      ["Mode", step.mode !== "wait" ? step.mode : null],
      ["Ended", step.ended_at ? time(step.ended_at) : null],
    ]),
    waitText(step, wait, pending),
    tries.length ? [h("h4", { class: "attempts-head" }, "Attempts"), attemptsTable(tries, `attempts-${step.id}`)] : null,
    TERMINAL.has(run.status) ? replayFrom(run, step, message) : null,
    pending && wait.event
      ? h("div", { class: "resume" },
          h("p", { class: "muted" }, "Resume this step by sending a matching event:"),
          eventForm({ name: wait.event, data: matchingData(wait.if, run.events[0]), compact: true, onSent: (ids) => notice(message, "ok", "Sent ", eventLink(ids[0]), "; the step resumes if the event matches.") }))
      : null,
    pending && wait.signal
      ? h("div", { class: "resume", id: `signal-${step.id}` },
          h("p", { class: "muted" }, "Complete this step by sending the signal:"),
          signalForm(run.run_id, wait.signal, () => notice(message, "ok", "Sent signal ", code(wait.signal), "; the step resumes.")))
      : null,
    "error" in step ? errorBox(step.error) : pending ? null : json(step.output),
  );
}

function waitText(step, wait, pending) {
  if (!Object.keys(wait).length) return null;
  const verb = pending ? "Waits" : "Waited";
  if (wait.event) {
    return h("p", { class: "wait" }, `${verb} for event `, code(wait.event),
      wait.if ? [" matching ", code(wait.if)] : null, wait.until ? [" until ", time(wait.until)] : null);
  }
  if (wait.signal) {
    return h("p", { class: "wait" }, `${verb} for signal `, code(wait.signal),
      wait.until ? [" until ", time(wait.until)] : null);
  }
  if (wait.function_id) {
    return h("p", { class: "wait" }, pending ? "Invoking " : "Invoked ", functionLink(wait.function_id),
      wait.until ? [", times out at ", time(wait.until)] : null);
  }
  if (wait.until) return h("p", { class: "wait" }, pending ? "Sleeps until " : "Slept until ", time(wait.until));
  return json(wait);
}

/** Event data satisfying the simple `async.data.x == event.data.y` clauses of a wait. */
function matchingData(expression, trigger) {
  const data = {};
  for (const clause of (expression || "").split("&&")) {
    const found = clause.trim().match(/^(\S+)\s*==\s*(\S+)$/);
    if (!found) continue;
    let [left, right] = [found[1], found[2]];
    if (!left.startsWith("async.data.")) [left, right] = [right, left];
    if (!left.startsWith("async.data.")) continue;
    let value;
    if (right.startsWith("event.")) value = right.slice(6).split(".").reduce((o, k) => (o == null ? undefined : o[k]), trigger);
    else {
      try {
        value = JSON.parse(right.replace(/^'(.*)'$/, '"$1"'));
      } catch {
        continue;
      }
    }
    if (value === undefined) continue;
    const path = left.slice(11).split(".");
    let at = data;
    for (const key of path.slice(0, -1)) at = at[key] = at[key] && typeof at[key] === "object" ? at[key] : {};
    at[path[path.length - 1]] = value;
  }
  return data;
}

/** A link to the run's conversation (its `conversation` attribute), or null. */
function conversationLink(attributes) {
  const id = (attributes || {}).conversation;
  if (!id) return null;
  return h("a", { href: `#/conversations/${enc(id)}`, id: "run-conversation", class: "mono" }, id);
}

/** A run's attributes as chips, each a link to the runs that share it (null: none). */
function attributeChips(attributes) {
  const pairs = Object.entries(attributes || {});
  if (!pairs.length) return null;
  return h(
    "span",
    { id: "run-attributes" },
    pairs.map(([name, value]) =>
      h("a", { class: "chip attr mono", href: `#/runs?${new URLSearchParams({ attribute: `${name}:${value}` })}` }, `${name}=${value}`),
    ),
  );
}
