// The run page's step panel: one step's input, output or error and attempts, beside the
// trace. Opened from a step's name in the trace or its "Inspect" button in the timeline
// (a button: Enter opens it too); Escape or the close button closes it and gives focus
// back to what opened it. The page's URL names the open step (#/runs/<id>?step=<step id>),
// so a link opens the run with the panel open; the URL is replaced, not pushed, so the
// page is not rendered again. Payloads are shown as text (dom.js `json`), never as HTML.
import { TERMINAL, api, duration, enc, facts, functionLink, h, json, runLink, time } from "./dom.js";
import { attemptsOf, attemptsTable } from "./attempts.js";
import { kindOf } from "./trace.js";

const WHAT = {
  sleep: "Sleep", event: "Wait for an event", signal: "Wait for a signal", invoke: "Invoke", step: "Step",
};

/** A failed step's or run's error: name, message and stack, as text. */
export function errorBox(error) {
  if (error && typeof error === "object" && (error.message || error.name)) {
    return h(
      "div",
      { class: "error-box" },
      h("p", {}, h("strong", {}, error.name || "Error"), ": ", error.message || ""),
      error.stack ? h("pre", { class: "stack" }, error.stack) : null,
    );
  }
  return h("div", { class: "error-box" }, json(error));
}

/**
 * The panel of the run `runId`'s page. `stateOf(step)` words a step's state (run.js).
 * Returns { el, open(stepId, opener), close(), refresh(data), openId() }; `refresh` takes
 * what the page read: { run, steps, attempts, children }.
 */
export function stepPanel(runId, ctx, stateOf) {
  const title = h("h2", { id: "step-panel-title" });
  const body = h("div", { id: "step-panel-body" });
  const closer = h("button", {
    type: "button", id: "step-panel-close", class: "close", "aria-label": "Close the step panel", title: "Close (Esc)",
  }, "×");
  const el = h("aside", {
    id: "step-panel", class: "step-panel", role: "dialog", "aria-modal": "false",
    "aria-labelledby": "step-panel-title", tabindex: "-1", hidden: true,
  }, h("div", { class: "step-panel-head" }, title, closer), body);
  let data = null;
  let current = null; // the open step's id
  let opener = null; // what to give focus back to: { where, stepId, el }
  let shown = ""; // what the body shows, to render it again only on a change
  const childInput = new Map(); // invoked run id -> its trigger data (read once)

  closer.addEventListener("click", () => close());
  function onKey(e) {
    if (!ctx.alive()) return document.removeEventListener("keydown", onKey);
    if (e.key === "Escape" && current !== null) {
      e.preventDefault();
      close();
    }
  }
  document.addEventListener("keydown", onKey);

  function open(stepId, from = null) {
    current = stepId;
    opener = from;
    shown = "";
    el.hidden = false;
    el.closest(".run-page")?.classList.add("panel-open");
    render();
    setUrl(stepId);
    el.focus();
  }

  function close() {
    if (current === null) return;
    const stepId = current;
    current = null;
    el.hidden = true;
    el.closest(".run-page")?.classList.remove("panel-open");
    setUrl(null);
    focusOpener(stepId);
  }

  function focusOpener(stepId) {
    let target = opener && opener.el && opener.el.isConnected ? opener.el : null;
    if (!target && opener) { // the page was rendered again since: the same control, new
      const sel = CSS.escape(stepId);
      target = opener.where === "timeline"
        ? document.querySelector(`#timeline button.inspect-step[data-step="${sel}"]`)
        : document.querySelector(`#trace .trace-row[data-step="${sel}"] button.trace-name`);
    }
    if (target) target.focus();
  }

  function setUrl(stepId) {
    const hash = `#/runs/${enc(runId)}${stepId ? `?step=${enc(stepId)}` : ""}`;
    if (location.hash !== hash) history.replaceState(history.state, "", hash);
  }

  function refresh(next) {
    data = next;
    if (current !== null) render();
  }

  function render() {
    if (!data) return;
    const step = data.steps.find((s) => s.id === current);
    const key = JSON.stringify([step, attemptsOf(data.attempts, current), data.run.status]);
    if (key === shown) return;
    shown = key;
    if (!step) {
      title.textContent = "Step";
      body.replaceChildren(h("p", { class: "empty" }, `This run has no step ${current}.`));
      return;
    }
    const kind = kindOf(step);
    title.replaceChildren(h("span", { class: "step-panel-kind" }, WHAT[kind]), " ", step.name || step.id, " ",
      h("span", { class: `badge s-${step.status.toLowerCase()}`, id: "step-panel-state" }, stateOf(step)));
    const tries = attemptsOf(data.attempts, step.id);
    body.replaceChildren(
      facts([
        ["Step id", h("span", { class: "mono" }, step.id)],
        ["Op", step.kind || step.op],
        ["Started", time(step.started_at)],
        ["Ended", step.ended_at ? time(step.ended_at) : null],
        ["Duration", step.duration_ms === null ? null : duration(step.duration_ms)],
        ["Attempts", step.max_attempts ? `${step.attempts} of ${step.max_attempts}` : String(step.attempts)],
      ]),
      h("section", { class: "panel-part", id: "step-panel-input" }, h("h3", {}, "Input"), input(step, kind)),
      "error" in step
        ? h("section", { class: "panel-part", id: "step-panel-error" }, h("h3", {}, "Error"), errorBox(step.error))
        : h("section", { class: "panel-part", id: "step-panel-output" }, h("h3", {}, "Output"), output(step)),
      h("section", { class: "panel-part", id: "step-panel-attempts" }, h("h3", {}, "Attempts"),
        tries.length ? attemptsTable(tries, `panel-attempts-${step.id}`)
          : h("p", { class: "muted" }, step.attempts ? "It succeeded at its first attempt." : "No attempt yet.")),
    );
  }

  function output(step) {
    if (!TERMINAL.has(step.status)) return h("p", { class: "muted" }, "Not finished yet.");
    return json(step.output);
  }

  /** What the step was asked to do: its wait, the invoked run's data, or the run's event. */
  function input(step, kind) {
    const wait = step.wait || {};
    if (kind === "sleep") return h("p", {}, "Sleep until ", time(wait.until));
    if (kind === "event" || kind === "signal") return json(wait);
    if (kind === "invoke") {
      const child = data.children.find((c) => c.parent_step_id === step.id);
      const box = h("div", { class: "invoke-input" }, h("p", {}, "Invokes ", functionLink(wait.function_id),
        child ? [" as run ", runLink(child.run_id)] : null, wait.until ? [", times out at ", time(wait.until)] : null));
      if (child) box.append(childData(child.run_id));
      return box;
    }
    const event = data.run.events[0];
    return [h("p", { class: "muted" }, "A step records no input of its own: its code reads the run's event",
      event ? [" (", h("code", {}, event.name), ")"] : null, "."), event ? json(event.data) : null];
  }

  /** The data the invoked run was started with, read once. */
  function childData(childId) {
    const slot = h("div", { class: "child-data" });
    const show = (value) => slot.replaceChildren(h("p", { class: "muted" }, "With the data:"), json(value));
    if (childInput.has(childId)) show(childInput.get(childId));
    else {
      api(`v1/runs/${enc(childId)}`).then((r) => {
        const value = ((r.data.events || [])[0] || {}).data;
        childInput.set(childId, value);
        show(value);
      }).catch(() => slot.replaceChildren(h("p", { class: "muted" }, "Its data could not be read.")));
    }
    return slot;
  }

  return { el, open, close, refresh, openId: () => current };
}

/** The button that opens a step in the panel, for the timeline's rows. */
export function inspectButton(step, panel) {
  const name = step.name || step.id;
  const button = h("button", {
    type: "button", class: "inspect-step link", "data-step": step.id, title: `Inspect step ${name} beside the trace`,
    "aria-label": `Inspect step ${name}`,
  }, "Inspect");
  button.addEventListener("click", () => panel.open(step.id, { where: "timeline", stepId: step.id, el: button }));
  return button;
}
