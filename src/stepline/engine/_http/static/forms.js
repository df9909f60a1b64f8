// Forms that start work: send an event (to test triggers or resume a waiting step), send
// a signal to a run's waiting step, and invoke a function directly with data.
import { api, enc, fill, h, notice, parseJson } from "./dom.js";

let counter = 0;

/** A form POSTing one event to v1/events; `onSent(ids)` gets the stored event ids. */
export function eventForm({ name = "", names = [], data = {}, compact = false, onSent }) {
  const n = ++counter;
  const list = names.length ? h("datalist", { id: `event-names-${n}` }, names.map((x) => h("option", { value: x }))) : null;
  const nameInput = h("input", {
    name: "name", value: name, required: true, readonly: compact, id: `event-name-${n}`,
    list: list ? `event-names-${n}` : null, autocomplete: "off", spellcheck: "false",
  });
  const dataInput = h("textarea", { name: "data", rows: compact ? 3 : 6, spellcheck: "false", id: `event-data-${n}` });
  dataInput.value = JSON.stringify(data, null, 2);
  const status = h("div");
  const form = h(
    "form",
    { class: "send-event" },
    h("label", { for: `event-name-${n}` }, "Event name"), nameInput, list,
    h("label", { for: `event-data-${n}` }, "Data (JSON)"), dataInput,
    h("div", {}, h("button", { type: "submit", class: "primary" }, "Send event")),
    status,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const body = { name: nameInput.value.trim(), data: parseJson(dataInput.value, "Data") };
      const sent = await api("v1/events", { method: "POST", body });
      fill(status);
      onSent(sent.data.ids, body);
    } catch (error) {
      notice(status, "error", error.message);
    }
  });
  return form;
}

/** A form POSTing signal `name` to run `runId` (v1/runs/{id}/signals/{name}); `onSent()`. */
export function signalForm(runId, name, onSent) {
  const n = ++counter;
  const dataInput = h("textarea", { name: "data", rows: 3, spellcheck: "false", id: `signal-data-${n}` });
  dataInput.value = "{}";
  const status = h("div");
  const form = h(
    "form",
    { class: "send-signal" },
    h("label", { for: `signal-data-${n}` }, "Data (JSON)"), dataInput,
    h("div", {}, h("button", { type: "submit", class: "primary" }, "Send signal")),
    status,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const body = { data: parseJson(dataInput.value, "Data") };
      await api(`v1/runs/${enc(runId)}/signals/${enc(name)}`, { method: "POST", body });
      fill(status);
      onSent();
    } catch (error) {
      notice(status, "error", error.message);
    }
  });
  return form;
}

/** A form starting `functionId` directly with data; `onStarted(runId)`. */
export function invokeForm(functionId, onStarted) {
  const n = ++counter;
  const dataInput = h("textarea", { name: "data", rows: 4, spellcheck: "false", id: `invoke-data-${n}` });
  dataInput.value = "{}";
  const status = h("div");
  const form = h(
    "form",
    { class: "invoke" },
    h("label", { for: `invoke-data-${n}` }, "Data (JSON)"), dataInput,
    h("div", {}, h("button", { type: "submit" }, "Invoke")),
    status,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const body = { data: parseJson(dataInput.value, "Data") };
      const started = await api(`v1/functions/${enc(functionId)}/runs`, { method: "POST", body });
      fill(status);
      onStarted(started.data.run_id);
    } catch (error) {
      notice(status, "error", error.message);
    }
  });
  return form;
}
