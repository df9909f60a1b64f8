// Events: the list (filter by name, open by id) and the event page (payload, the runs it
// started, and why it started none).
import { api, code, enc, eventLink, facts, fill, functionLink, h, json, qs, runLink, table, time } from "./dom.js";
import { runTable } from "./runs.js";

const PAGE_SIZE = 50;

export async function list(view, _args, params, ctx) {
  const known = (await api("v1/functions")).data;
  const names = [...new Set(known.flatMap((f) => f.triggers.map((t) => t.event).filter(Boolean)))].sort();
  const results = h("div", { id: "events-table" });
  const pager = h("div", { class: "pager" });
  fill(view, h("h1", {}, "Events"), searchForms(params, names, ctx), results, pager);
  let last = "";

  async function load() {
    const query = qs({ name: params.get("name"), cursor: params.get("cursor"), limit: PAGE_SIZE });
    const page = await api(`v1/events?${query}`);
    if (!ctx.alive()) return;
    const key = JSON.stringify(page);
    if (key === last) return;
    last = key;
    fill(
      results,
      table(
        ["Received", "Name", "Event", "Data"],
        page.data.map((e) => [time(e.received_at), h("strong", {}, e.name), eventLink(e.internal_id, e.id), preview(e.data)]),
        params.get("name") ? `No events named ${params.get("name")}.` : "No events yet.",
        { class: "events" },
      ),
    );
    const base = { name: params.get("name") };
    fill(
      pager,
      params.get("cursor") ? h("a", { href: `#/events?${qs(base)}`, class: "button" }, "← Newest") : null,
      page.metadata.next_cursor
        ? h("a", { href: `#/events?${qs({ ...base, cursor: page.metadata.next_cursor })}`, class: "button" }, "Older →")
        : null,
    );
  }
  await load();
  return { poll: load };
}

function preview(data) {
  const text = JSON.stringify(data);
  return h("code", { class: "preview", title: text }, text.length > 90 ? `${text.slice(0, 90)}…` : text);
}

function searchForms(params, names, ctx) {
  const name = h("input", { name: "name", value: params.get("name"), list: "known-event-names", placeholder: "Event name, e.g. app/user.created", "aria-label": "Event name" });
  const byName = h(
    "form",
    { class: "filters", id: "event-filter" },
    name,
    h("datalist", { id: "known-event-names" }, names.map((x) => h("option", { value: x }))),
    h("button", { type: "submit", class: "primary" }, "Filter"),
    h("a", { href: "#/events", class: "button" }, "Reset"),
  );
  byName.addEventListener("submit", (e) => {
    e.preventDefault();
    ctx.navigate(`#/events?${qs({ name: name.value.trim() })}`);
  });
  const id = h("input", { name: "id", placeholder: "Event id", "aria-label": "Event id" });
  const byId = h("form", { class: "filters" }, id, h("button", { type: "submit" }, "Open event"));
  byId.addEventListener("submit", (e) => {
    e.preventDefault();
    if (id.value.trim()) ctx.navigate(`#/events/${enc(id.value.trim())}`);
  });
  return h("div", { class: "searches" }, byName, byId);
}

// -- one event ---------------------------------------------------------------------------

const REASONS = {
  rate_limited: "Rate limited: the function's rate limit was reached, so this event was dropped.",
  idempotent: "Idempotent: an event with the same id (or idempotency key) already started a run within 24 hours.",
  singleton: "Singleton: a run with the same singleton key was already in progress.",
  debounced: "Debounced: a later event replaced this one",
};

export async function page(view, [eventId], _params, ctx) {
  const [found, known] = await Promise.all([api(`v1/events/${enc(eventId)}`), api("v1/functions")]);
  const event = found.data;
  const runsBox = h("div", { id: "event-runs" });
  fill(
    view,
    h("h1", {}, event.name),
    facts([
      ["Event id", h("span", { class: "mono" }, event.id)],
      ["Internal id", event.internal_id !== event.id ? h("span", { class: "mono" }, event.internal_id) : null],
      ["Received", time(event.received_at)],
      ["Timestamp", event.ts ? time(new Date(event.ts).toISOString()) : null],
      ["Version", event.v],
      ["Runs", h("a", { href: `#/runs?${qs({ event_id: event.internal_id })}` }, "list runs of this event")],
    ]),
    h("h2", {}, "Data"),
    json(event.data),
    Object.keys(event.user || {}).length ? [h("h2", {}, "User"), json(event.user)] : null,
    h("h2", {}, "Runs"),
    runsBox,
  );
  let last = "";

  async function load() {
    const linked = await api(`v1/events/${enc(event.internal_id)}/runs`);
    if (!ctx.alive()) return;
    const key = JSON.stringify(linked);
    if (key === last) return;
    last = key;
    const skipped = linked.metadata.skipped;
    fill(
      runsBox,
      linked.data.length ? runTable(linked.data, "") : null,
      skipped.length
        ? h("ul", { class: "skipped" }, skipped.map((s) =>
            h("li", {}, functionLink(s.function_id), ": ", REASONS[s.reason] || s.reason,
              s.run_id ? [" in run ", runLink(s.run_id), "."] : null)))
        : null,
      !linked.data.length && !skipped.length ? whyNone(event, known.data) : null,
    );
  }
  await load();
  return { poll: load };
}

/** Why an event with no links started nothing, judged from the registered triggers. */
function whyNone(event, known) {
  const listening = known.filter((f) => f.triggers.some((t) => t.event && matches(t.event, event.name)));
  if (!listening.length) {
    return h("p", { class: "notice", id: "why-none" }, "No run: no registered function is triggered by ", code(event.name), ".");
  }
  const conditional = listening.filter((f) => f.triggers.some((t) => t.event && matches(t.event, event.name) && t.expression));
  if (conditional.length === listening.length) {
    return h("p", { class: "notice", id: "why-none" }, "No run: the trigger condition of ",
      conditional.map((f, i) => [i ? ", " : "", functionLink(f.function_id), " (", code(f.triggers.find((t) => t.expression).expression), ")"]),
      " did not match this event.");
  }
  return h("p", { class: "notice", id: "why-none" }, "No run yet: ",
    listening.map((f, i) => [i ? ", " : "", functionLink(f.function_id)]),
    " listen for this event; runs appear here once the engine has processed it (or the function was registered after the event arrived).");
}

function matches(pattern, name) {
  if (!pattern.includes("*")) return pattern === name;
  const re = new RegExp(`^${pattern.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`);
  return re.test(name);
}
