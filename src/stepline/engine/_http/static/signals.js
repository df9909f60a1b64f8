// The run page's signals: the signals the run waits for (with a link to the step's send
// form) and the ones it received, with their data, read from its signal steps.
import { TERMINAL, code, h, time } from "./dom.js";

const ENDED = new Set(["Completed", "Failed", "Cancelled"]);

/** What became of a signal step: waiting, received, timed out or cut short. */
export function signalState(step, run) {
  if (!ENDED.has(step.status)) return TERMINAL.has(run.status) ? "Cancelled" : "Waiting";
  if (step.status === "Completed") return step.output === null || step.output === undefined ? "Timed out" : "Received";
  return step.status;
}

const BADGE = { Waiting: "Waiting", Received: "Completed", "Timed out": "Cancelled" };

/** The signals section (null when the run has no signal step). */
export function signalsSection(run, steps) {
  const waits = steps.filter((s) => s.wait && s.wait.signal);
  if (!waits.length) return null;
  const rows = waits.map((step) => {
    const state = signalState(step, run);
    const output = step.output && typeof step.output === "object" ? step.output : null;
    return h("tr", { "data-signal": step.wait.signal, "data-state": state },
      h("td", {}, code(step.wait.signal)),
      h("td", {}, h("span", { class: `badge s-${(BADGE[state] || state).toLowerCase()}` }, state)),
      h("td", {}, time(step.started_at)),
      h("td", {}, state === "Waiting" ? [step.wait.until ? ["until ", time(step.wait.until)] : "—", " ", sendLink(step)]
        : time(step.ended_at)),
      h("td", {}, state === "Received" ? h("code", { class: "signal-data" }, JSON.stringify(output && "data" in output ? output.data : step.output)) : "—"),
    );
  });
  return h("section", { id: "run-signals" },
    h("h2", {}, "Signals"),
    h("table", { class: "signals", id: "signals" },
      h("thead", {}, h("tr", {}, ["Signal", "State", "Waiting since", "Received / deadline", "Data"].map((x) => h("th", {}, x)))),
      h("tbody", {}, rows)));
}

function sendLink(step) {
  const open = () => {
    const el = document.querySelector(`#timeline details.step[data-step="${CSS.escape(step.id)}"]`);
    if (!el) return;
    el.open = true;
    el.scrollIntoView({ block: "center" });
    const field = el.querySelector("form.send-signal textarea");
    if (field) field.focus();
  };
  return h("button", { type: "button", class: "link send-signal-link", onclick: open }, "Send…");
}
