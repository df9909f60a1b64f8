// Functions: every registered function by app, and a function's page with its config, its
// metrics as charts (metrics.js), a "send test event" form, an invoke form and its recent
// runs. Either pauses or resumes a function (behind a confirm).
import { api, badge, code, enc, eventLink, facts, fill, functionLink, h, json, notice, qs, runLink, table, time } from "./dom.js";
import { eventForm, invokeForm } from "./forms.js";
import { metricsSection } from "./metrics.js";
import { runTable } from "./runs.js";

const FLOW = [
  ["concurrency", "Concurrency"], ["throttle", "Throttle"], ["rateLimit", "Rate limit"],
  ["debounce", "Debounce"], ["batchEvents", "Batching"], ["priority", "Priority"],
  ["singleton", "Singleton"], ["idempotency", "Idempotency"], ["cancel", "Cancel on"],
  ["timeouts", "Timeouts"],
];

export async function list(view) {
  const known = (await api("v1/functions")).data;
  const apps = [...new Set(known.map((f) => f.app_id))].sort();
  fill(
    view,
    h("h1", {}, "Functions"),
    apps.length ? null : h("p", { class: "empty" }, "No functions yet: sync an app on the Apps page."),
    apps.map((app) => [
      h("h2", {}, "App ", code(app)),
      table(
        ["Function", "Triggers", "Retries", "Flow control", "State", ""],
        known.filter((f) => f.app_id === app).map((f) => [
          [h("a", { href: `#/functions/${enc(f.function_id)}` }, f.name || f.function_id), h("div", { class: "muted mono small" }, f.function_id)],
          triggers(f.triggers),
          retries(f.config),
          FLOW.filter(([key]) => f.config[key] !== undefined).map(([, label]) => h("span", { class: "chip" }, label)),
          state(f),
          pauseControls(f, () => list(view)),
        ]),
        "",
        { class: "functions" },
      ),
    ]),
  );
}

/** "Paused" (since when, why) or "Active". */
function state(fn) {
  if (!fn.paused) return h("span", { class: "badge s-active", "data-state": fn.function_id }, "Active");
  const { at, crons, reason } = fn.paused;
  return h("div", { class: "paused", "data-state": fn.function_id },
    h("span", { class: "badge s-paused", title: `since ${at}` }, "Paused"),
    " since ", time(at),
    fn.triggers.some((t) => t.cron) ? h("div", { class: "muted small" }, `cron ticks ${crons === "skip" ? "skipped" : "queued"}`) : null,
    reason ? h("div", { class: "muted small pause-reason" }, reason) : null);
}

/** A Pause… or Resume… button, each behind a confirm; `reload()` once the engine agreed. */
function pauseControls(fn, reload) {
  const message = h("div");
  const data = { "data-function": fn.function_id };
  async function act(what, body) {
    try {
      await api(`v1/functions/${enc(fn.function_id)}/${what}`, { method: "POST", body });
      await reload();
    } catch (error) {
      notice(message, "error", `Could not ${what}: ${error.message}`);
    }
  }
  const confirmed = (button, confirm) => {
    button.addEventListener("click", () => ((confirm.hidden = false), (button.hidden = true)));
    return h("div", { class: "pause-controls" }, button, confirm, message);
  };
  const back = (label) => h("button", { type: "button", onclick: (e) => ((e.target.parentNode.hidden = true), (e.target.parentNode.previousSibling.hidden = false)) }, label);
  if (fn.paused) {
    return confirmed(
      h("button", { type: "button", class: "resume-fn", ...data }, "Resume…"),
      h("span", { class: "confirm", hidden: true },
        "Resume? Waiting runs start, oldest first. ",
        h("button", { type: "button", class: "primary confirm-resume", ...data, onclick: () => act("resume", {}) }, "Yes, resume"),
        back("Keep paused")),
    );
  }
  const skip = h("input", { type: "checkbox", class: "skip-crons" });
  const reason = h("input", { type: "text", class: "reason", placeholder: "Reason (optional)", maxlength: 1000, ...data });
  const body = () => ({ crons: skip.checked ? "skip" : "queue", ...(reason.value.trim() ? { reason: reason.value.trim() } : {}) });
  return confirmed(
    h("button", { type: "button", class: "danger pause-fn", ...data }, "Pause…"),
    h("span", { class: "confirm", hidden: true },
      "Pause? New runs wait; runs in flight stop before their next step. ",
      fn.triggers.some((t) => t.cron) ? h("label", {}, skip, " skip cron ticks ") : null,
      reason, " ",
      h("button", { type: "button", class: "danger confirm-pause", ...data, onclick: () => act("pause", body()) }, "Yes, pause"),
      back("Keep running")),
  );
}

function triggers(list) {
  return list.map((t) =>
    h("span", { class: "chip trigger" }, t.event ? ["event ", h("strong", {}, t.event)] : ["cron ", h("strong", {}, t.cron)],
      t.expression ? [" if ", code(t.expression)] : null),
  );
}

function retries(config) {
  const attempts = config.steps?.step?.retries?.attempts;
  return attempts === undefined ? "default (4)" : String(attempts);
}

/** A config value in one line: `limit: 2, key: event.data.user`. */
function describe(value) {
  if (Array.isArray(value)) return value.map((v, i) => [i ? h("br") : null, describe(v)]);
  if (value && typeof value === "object") {
    return Object.entries(value).map(([k, v], i) => [i ? ", " : "", `${k}: `, typeof v === "object" ? JSON.stringify(v) : code(String(v))]);
  }
  return code(String(value));
}

export async function page(view, [functionId], params, ctx) {
  const known = (await api("v1/functions")).data;
  const fn = known.find((f) => f.function_id === functionId);
  if (!fn) {
    fill(view, h("h1", {}, "Function not found"), h("p", {}, code(functionId), " is not registered. ", h("a", { href: "#/functions" }, "All functions")));
    return null;
  }
  const eventNames = fn.triggers.map((t) => t.event).filter(Boolean);
  const sent = []; // [{eventId} | {runId}] newest first
  const results = h("ul", { class: "results", id: "test-results" });
  const recent = h("div", { id: "function-runs" });
  const metrics = metricsSection(fn.function_id, params.get("window"));
  const remember = (item) => {
    sent.unshift(item);
    load().catch(() => {}); // the next live refresh reports failures
  };
  fill(
    view,
    h("h1", {}, fn.name || fn.function_id),
    fn.config.description ? h("p", { class: "muted" }, fn.config.description) : null,
    facts([
      ["Function id", h("span", { class: "mono" }, fn.function_id)],
      ["App", fn.app_id],
      ["Updated", time(fn.updated_at)],
      ["Triggers", triggers(fn.triggers)],
      ["State", [state(fn), pauseControls(fn, () => ctx.navigate(`#/functions/${enc(fn.function_id)}?${qs({ window: metrics.window(), r: Date.now() })}`))]],
      ["Retries", retries(fn.config)],
      ...FLOW.filter(([key]) => fn.config[key] !== undefined).map(([key, label]) => [label, describe(fn.config[key])]),
    ]),
    metrics.el,
    h(
      "div",
      { class: "panels" },
      h("section", { class: "card" },
        h("h2", {}, "Send a test event"),
        eventNames.length
          ? eventForm({ name: eventNames[0], names: eventNames, onSent: (ids) => remember({ eventId: ids[0] }) })
          : h("p", { class: "muted" }, "This function has no event trigger; invoke it instead.")),
      h("section", { class: "card" },
        h("h2", {}, "Invoke"),
        h("p", { class: "muted" }, "Start a run directly with this data, bypassing triggers."),
        invokeForm(fn.function_id, (runId) => remember({ runId }))),
    ),
    results,
    h("h2", {}, "Recent runs ", h("a", { href: `#/runs?${qs({ function_id: fn.function_id })}`, class: "small" }, "all runs →")),
    recent,
    h("details", { class: "raw" }, h("summary", {}, "Registered config (JSON)"), json(fn.config)),
  );

  async function load() {
    const [runs, , ...items] = await Promise.all([
      api(`v1/runs?${qs({ function_id: fn.function_id, limit: 10 })}`),
      metrics.refresh(),
      ...sent.map(resultItem),
    ]);
    if (!ctx.alive()) return;
    fill(recent, runTable(runs.data, "No runs yet."));
    fill(results, items);
  }
  await load();
  return { poll: load };
}

/** A line for an event sent or a run started from this page, with live run statuses. */
async function resultItem(item) {
  if (item.runId) {
    const run = (await api(`v1/runs/${enc(item.runId)}`)).data;
    return h("li", {}, "Invoked: run ", runLink(run.run_id), " ", badge(run.status));
  }
  const linked = await api(`v1/events/${enc(item.eventId)}/runs`);
  const runs = linked.data.map((run) => [" run ", runLink(run.run_id), " ", badge(run.status)]);
  const skipped = linked.metadata.skipped.map((s) => [" skipped by ", functionLink(s.function_id), ` (${s.reason})`]);
  return h("li", {}, "Sent event ", eventLink(item.eventId), ":",
    runs.length || skipped.length ? [runs, skipped] : h("span", { class: "muted" }, " waiting for a run…"));
}
