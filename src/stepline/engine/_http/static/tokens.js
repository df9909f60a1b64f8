// What a run's model requests used (durable AI agents, stepline.ai): input and output
// tokens and requests, per model and per model-request step (GET v1/runs/{id}/tokens).
// The run page shows the section only once the run has made a model request.
import { api, code, enc, facts, fill, h, table, time } from "./dom.js";

/** The run page's tokens section: `{ el, refresh(steps) }`; hidden while the run has no
 * model usage. `refresh` is called when the run's steps change (a step recorded is when
 * the engine counts its usage), with the steps, to name each model-request step. */
export function runTokens(runId) {
  const el = h("section", { id: "run-tokens", hidden: true });
  let last = "";
  async function refresh(steps) {
    let found;
    try {
      found = (await api(`v1/runs/${enc(runId)}/tokens`)).data;
    } catch (error) {
      if (error.status === 404) return;
      fill(el, h("h2", {}, "Tokens"), h("p", { class: "notice error" }, `Could not load tokens: ${error.message}`));
      el.hidden = false;
      return;
    }
    const names = new Map((steps || []).map((s) => [s.id, s.name || s.id]));
    const key = JSON.stringify([found, [...names]]);
    if (key === last) return;
    last = key;
    el.hidden = !found.requests;
    if (found.requests) fill(el, runTokensView(found, names));
  }
  return { el, refresh };
}

/** Totals, a table per model and a table per model-request step. */
export function runTokensView(t, names = new Map()) {
  const models = Object.entries(t.models || {});
  return [
    h("h2", {}, "Tokens"),
    facts([
      ["Input tokens", figure("input_tokens", t.input_tokens)],
      ["Output tokens", figure("output_tokens", t.output_tokens)],
      ["Total", figure("total_tokens", t.total_tokens)],
      ["Model requests", figure("requests", t.requests)],
    ]),
    h("h3", {}, "Per model"),
    table(["Model", "Requests", "Input", "Output", "Total"],
      models.map(([model, m]) => [model ? code(model) : h("span", { class: "muted" }, "unnamed"),
        count(m.requests), count(m.input_tokens), count(m.output_tokens), count(m.total_tokens)]),
      "No model named.", { class: "usage", id: "tokens-models" }),
    h("h3", {}, "Per model request"),
    table(["Step", "Model", "Recorded", "Input", "Output"],
      (t.steps || []).map((s) => [h("span", { class: "mono" }, names.get(s.step_id) || s.step_id),
        s.model ? code(s.model) : "—", time(s.at), count(s.input_tokens), count(s.output_tokens)]),
      "No model request recorded.", { class: "usage", id: "tokens-steps" }),
  ];
}

/** A whole number with thousands separators. */
export const count = (value) => (value ?? 0).toLocaleString("en-US");
const figure = (name, value) => h("span", { "data-figure": name }, count(value));
