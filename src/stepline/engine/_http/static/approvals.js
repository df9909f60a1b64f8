// Approvals: durable agents' tool calls waiting for a person, per function. Each has a
// form built from the tool's argument JSON schema (edit the arguments, approve) and a
// reason to reject with. A run over its token budget (TokenBudget(on_exceeded="approve"))
// asks here too: its card names the budget, key, period and tokens used, and approving
// takes no arguments. The engine records the decision as the dashboard's.
import { api, code, enc, facts, fill, functionLink, h, notice, runLink, time } from "./dom.js";

export async function list(view, _args, _params, ctx) {
  const message = h("div", { id: "approval-message" });
  const groups = h("div", { id: "approvals" });
  fill(view, h("h1", {}, "Approvals"), message, groups);
  let last = "";
  const editing = new Set(); // approvals whose form the person has touched: not redrawn

  async function load() {
    const found = [];
    let cursor = "";
    do {
      const page = await api(`v1/approvals?limit=200${cursor ? `&cursor=${enc(cursor)}` : ""}`);
      found.push(...page.data);
      cursor = page.metadata.next_cursor;
    } while (cursor && found.length < 1000);
    if (!ctx.alive()) return;
    const key = JSON.stringify(found.map((a) => a.approval_id));
    if (key === last || editing.size) return;
    last = key;
    const byFunction = new Map();
    for (const approval of found) {
      if (!byFunction.has(approval.function_id)) byFunction.set(approval.function_id, []);
      byFunction.get(approval.function_id).push(approval);
    }
    if (!found.length) {
      fill(groups, h("p", { class: "muted" }, "Nothing waits for a decision."));
      return;
    }
    fill(
      groups,
      [...byFunction].map(([functionId, approvals]) =>
        h("section", { class: "approval-group" }, h("h2", {}, functionLink(functionId)), approvals.map(card)),
      ),
    );
  }

  function card(approval) {
    const budget = approval.budget;
    const fields = budget ? { elements: [], read: () => undefined } : argumentFields(approval.schema, approval.args);
    // a tool call's reason goes to the model; a budget's, into the error the run fails with
    const told = budget ? "Reason (in the run's error)" : "Reason (told to the model)";
    const reason = h("input", { name: "reason", placeholder: told, "aria-label": "Reason" });
    const note = h("div", { class: "approval-note" });
    const form = h(
      "form",
      // the engine checks the arguments against the schema and says what is wrong
      { class: "approval-form", "data-approval": approval.approval_id, novalidate: true },
      h("div", { class: "approval-args" }, fields.elements),
      h(
        "div",
        { class: "filters" },
        h("button", { type: "submit", class: "approve" }, "Approve"),
        reason,
        h("button", { type: "button", class: "reject", onclick: () => decide("reject", { reason: reason.value || undefined }) }, "Reject"),
      ),
      note,
    );
    form.addEventListener("input", () => editing.add(approval.approval_id));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      let args;
      try {
        args = fields.read();
      } catch (error) {
        notice(note, "error", error.message);
        return;
      }
      decide("approve", { args });
    });

    async function decide(verb, body) {
      notice(note, "", verb === "approve" ? "Approving…" : "Rejecting…");
      try {
        // signed in, the engine records "dashboard" whatever the body says; in dev mode, this
        const decision = { ...body, by: "dashboard" };
        await api(`v1/approvals/${enc(approval.approval_id)}/${verb}`, { method: "POST", body: decision });
        notice(message, "ok", `${verb === "approve" ? "Approved" : "Rejected"} ${subject(approval)} in run ${approval.run_id}.`);
        editing.delete(approval.approval_id);
        last = "";
        await load();
      } catch (error) {
        notice(note, "error", error.message);
      }
    }

    return h(
      "article",
      { class: budget ? "approval card budget-approval" : "approval card", id: `approval-${approval.approval_id}` },
      budget
        ? h("h3", {}, "Over its token budget ", budget.name ? code(budget.name) : "(the run's own)", " ", h("span", { class: "muted small" }, approval.agent || ""))
        : h("h3", {}, code(approval.tool), " ", h("span", { class: "muted small" }, approval.agent || "")),
      approval.description ? h("p", {}, approval.description) : null,
      budget ? budgetFacts(budget) : null,
      h(
        "p",
        { class: "muted small" },
        "Run ",
        runLink(approval.run_id),
        approval.started_by ? ` · started by ${approval.started_by}` : "",
        " · asked ",
        time(approval.asked_at),
        approval.until ? [" · ", approval.on_timeout === "fail" || budget ? "fails" : "rejected", " at ", time(approval.until)] : "",
      ),
      form,
    );
  }

  await load();
  return { poll: load };
}

/** What is asked, in words: the tool, or going over which token budget. */
function subject(approval) {
  if (!approval.budget) return approval.tool;
  return approval.budget.name ? `going over the token budget ${approval.budget.name}` : "going over the run's token budget";
}

/** What a person needs to let a model request go over a budget. */
function budgetFacts(b) {
  const period = b.period_seconds ? ` per ${periodText(b.period_seconds)}` : " for the run";
  return facts([
    ["Tokens used", h("span", { "data-figure": "used" }, `${b.used} of ${b.tokens}${period}`)],
    ["Key", b.key_expression ? [code(b.key), " ", h("span", { class: "muted small" }, `(${b.key_expression})`)] : null],
    ["Period ends", typeof b.window_end === "number" ? time(new Date(b.window_end * 1000).toISOString()) : null],
    ["Request held", code(b.request)],
    ["If approved", "that model request is made; the next one is checked again"],
  ]);
}

function periodText(seconds) {
  for (const [unit, size] of [["day", 86400], ["hour", 3600], ["minute", 60]]) {
    if (seconds >= size && seconds % size === 0) return seconds === size ? unit : `${seconds / size} ${unit}s`;
  }
  return `${seconds} seconds`;
}

/** Inputs for a tool's arguments from their JSON schema (a JSON box for what has no input). */
function argumentFields(schema, args) {
  const properties = (schema && schema.properties) || {};
  const names = [...new Set([...Object.keys(properties), ...Object.keys(args || {})])];
  const readers = [];
  const elements = names.map((name) => {
    const rule = resolve(schema, properties[name] || {});
    const value = (args || {})[name];
    const id = `arg-${name}`;
    let input;
    let read;
    if (Array.isArray(rule.enum)) {
      input = h("select", { id, name }, rule.enum.map((option) => h("option", { value: JSON.stringify(option), selected: option === value }, String(option))));
      read = () => JSON.parse(input.value);
    } else if (rule.type === "boolean") {
      input = h("input", { id, name, type: "checkbox", checked: Boolean(value) });
      read = () => input.checked;
    } else if (rule.type === "integer" || rule.type === "number") {
      input = h("input", { id, name, type: "number", step: rule.type === "integer" ? "1" : "any", value: value ?? "" });
      read = () => (input.value === "" ? undefined : Number(input.value));
    } else if (rule.type === "string") {
      input = h("input", { id, name, type: "text", value: value ?? "" });
      read = () => input.value;
    } else {
      input = h("textarea", { id, name, rows: 3 }, JSON.stringify(value ?? null, null, 2));
      read = () => {
        try {
          return JSON.parse(input.value);
        } catch (error) {
          throw new Error(`${name}: not JSON (${error.message})`);
        }
      };
    }
    readers.push([name, read]);
    const required = ((schema && schema.required) || []).includes(name);
    return h("label", { class: "approval-arg" }, h("span", {}, name, required ? " *" : ""), input, rule.description ? h("span", { class: "muted small" }, rule.description) : null);
  });
  return {
    elements,
    read() {
      const out = {};
      for (const [name, read] of readers) {
        const value = read();
        if (value !== undefined) out[name] = value;
      }
      return out;
    },
  };
}

/** A property's schema with a local ``$ref`` followed (Pydantic puts nested models in ``$defs``). */
function resolve(schema, rule) {
  const ref = rule && rule.$ref;
  if (typeof ref === "string" && ref.startsWith("#/$defs/")) {
    return (schema.$defs || {})[ref.slice(8)] || {};
  }
  return rule;
}
