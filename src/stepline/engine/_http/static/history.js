// The run page's raw history: every transition the run's records hold, oldest first
// (GET v1/runs/{id}/history: queued, started, each step's start and end, each failed
// attempt, notices, the end), as a list and as the JSON the API answered, with a button
// that copies that JSON. Read when the section is opened, and again on each change of the
// run while it stays open.
import { api, enc, h, time } from "./dom.js";

/** The history section of run `runId`'s page: { el, refresh() }. */
export function historySection(runId) {
  const list = h("div", { id: "history-list" });
  const raw = h("pre", { class: "json", id: "history-json" });
  const state = h("span", { class: "muted", id: "history-copied", role: "status" });
  const copy = h("button", { type: "button", id: "copy-history", title: "Copy the history as JSON" }, "Copy JSON");
  const el = h("details", { id: "run-history", class: "run-history" },
    h("summary", {}, h("h2", {}, "History"), " ",
      h("span", { class: "muted small" }, "every recorded transition, as JSON")),
    h("div", { class: "history-tools" }, copy, " ", state), list,
    h("details", { class: "history-raw" }, h("summary", {}, "Raw JSON"), raw));
  let text = "";

  async function refresh() {
    if (!el.open) return;
    const answer = await api(`v1/runs/${enc(runId)}/history`);
    const next = JSON.stringify(answer.data, null, 2);
    if (next === text) return;
    text = next;
    raw.textContent = text; // as text: payloads never become markup
    list.replaceChildren(table(answer.data));
  }

  el.addEventListener("toggle", () => {
    if (el.open) refresh().catch((error) => (state.textContent = `Could not read the history: ${error.message}`));
  });
  copy.addEventListener("click", async () => {
    try {
      await copyText(text);
      state.textContent = `Copied ${JSON.parse(text).length} transitions.`;
    } catch (error) {
      state.textContent = `Could not copy: ${error.message}`;
    }
  });
  return { el, refresh };
}

function table(transitions) {
  if (!transitions.length) return h("p", { class: "empty" }, "Nothing recorded yet.");
  return h("table", { class: "history" },
    h("thead", {}, h("tr", {}, ["#", "Time", "Transition", "Step", "Detail"].map((x) => h("th", {}, x)))),
    h("tbody", {}, transitions.map((t) =>
      h("tr", { "data-type": t.type, "data-seq": String(t.seq) },
        h("td", { class: "mono" }, String(t.seq)),
        h("td", {}, time(t.at)),
        h("td", {}, h("code", { class: "history-type" }, t.type)),
        h("td", {}, t.step_name || t.step_id || h("span", { class: "muted" }, "run")),
        h("td", {}, h("code", { class: "history-detail" }, brief(t.detail)))))));
}

/** A transition's detail on one line, cut to a readable length. */
function brief(detail) {
  const text = JSON.stringify(detail);
  if (text === "{}") return "";
  return text.length > 160 ? `${text.slice(0, 159)}…` : text;
}

/** Put `text` on the clipboard: the Clipboard API, or a selected textarea where it is refused. */
async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return;
    } catch {
      // refused (no permission, page not focused): fall through to the old way
    }
  }
  const area = h("textarea", { class: "copy-buffer", readonly: true, "aria-hidden": "true" });
  area.value = text;
  document.body.append(area);
  area.select();
  const done = document.execCommand("copy");
  area.remove();
  if (!done) throw new Error("the browser refused");
}
