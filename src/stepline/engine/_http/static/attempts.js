// Every attempt of a step, for the run page: when each started, how long it took, the
// error it failed with and when the next one was due (GET v1/runs/{id}/attempts lists
// the steps that failed at least once; a step that succeeded first time has none).
import { badge, duration, h, time } from "./dom.js";

/** The attempts of one step (or of the calls that failed outside any step: "step"). */
export function attemptsOf(attempts, stepId) {
  return attempts.filter((a) => a.step_id === stepId);
}

/** A step's attempts as a table (null when it has none recorded). */
export function attemptsTable(tries, id) {
  if (!tries.length) return null;
  return h(
    "table",
    { class: "attempts", id },
    h("thead", {}, h("tr", {}, ["#", "Result", "Started", "Duration", "Error", "Next attempt"].map((x) => h("th", {}, x)))),
    h("tbody", {}, tries.map((a) =>
      h("tr", { "data-attempt": String(a.attempt) },
        h("td", { class: "mono" }, String(a.attempt)),
        h("td", {}, badge(a.status)),
        h("td", {}, time(a.started_at)),
        h("td", {}, duration(a.duration_ms)),
        h("td", { class: "attempt-error" }, errorText(a.error)),
        h("td", {}, a.retry_at ? time(a.retry_at) : h("span", { class: "muted" }, a.status === "Failed" ? "not retried" : "—")),
      ))),
  );
}

/** The attempts of calls that failed outside any step, under the timeline (null: none). */
export function callAttempts(attempts) {
  const tries = attemptsOf(attempts, "step");
  if (!tries.length) return null;
  return h("section", { id: "call-attempts" },
    h("h3", {}, "Calls that failed outside any step"),
    h("p", { class: "muted small" }, "The function's own code (not a step) raised, or the app could not be reached."),
    attemptsTable(tries, "call-attempts-table"));
}

function errorText(error) {
  if (!error) return h("span", { class: "muted" }, "—");
  const name = error.name || "Error";
  const text = h("span", {}, h("strong", {}, name), error.message ? `: ${error.message}` : "");
  if (!error.stack) return text;
  // not a <details>: the step around it is one, and its <summary> stays the only one
  const stack = h("pre", { class: "stack", hidden: true }, error.stack);
  const toggle = h("button", { type: "button", class: "link stack-toggle", "aria-expanded": "false" }, "stack");
  toggle.addEventListener("click", () => {
    stack.hidden = !stack.hidden;
    toggle.setAttribute("aria-expanded", String(!stack.hidden));
  });
  return [text, " ", toggle, stack];
}
