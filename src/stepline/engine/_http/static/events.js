// Events: the list (search by name and by a CEL expression over the payload, open by id)
// and the event page (payload, the runs it started, why it started none, replay).
import { ApiError, ago, api, code, enc, eventLink, facts, fill, functionLink, h, json, notice, qs, refreshTimes, runLink, table, time } from "./dom.js";
import { runTable } from "./runs.js";

const PAGE_SIZE = 50;

export async function list(view, _args, params, ctx) {
  const known = (await api("v1/functions")).data;
  const names = [...new Set(known.flatMap((f) => f.triggers.map((t) => t.event).filter(Boolean)))].sort();
  const results = h("div", { id: "events-table" });
  const scanned = h("div", { id: "event-scan", class: "muted" });
  const pager = h("div", { class: "pager" });
  const follow = h("p", { class: "muted" }, "New events as they arrive, each with its runs: ", h("a", { href: "#/stream" }, "the event stream"), ".");
  fill(view, h("h1", {}, "Events"), follow, searchForms(params, names, ctx), scanned, results, pager);
  let last = "";
  const base = { name: params.get("name"), expression: params.get("expression") };

  async function load() {
    const query = qs({ ...base, cursor: params.get("cursor"), limit: PAGE_SIZE });
    let page;
    try {
      page = await api(`v1/events?${query}`);
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 400) throw error;
      if (!ctx.alive()) return;
      last = "";
      notice(results, "error", h("span", { id: "event-search-error", class: "pre" }, error.message));
      fill(scanned);
      fill(pager);
      return;
    }
    if (!ctx.alive()) return;
    refreshTimes(results);
    const key = JSON.stringify(page);
    if (key === last) return;
    last = key;
    fill(
      results,
      table(
        ["Received", "Name", "Event", "Data"],
        page.data.map((e) => [
          ago(e.received_at),
          [h("strong", {}, e.name), e.replay_of ? [" ", h("span", { class: "chip replay", title: `replay of ${e.replay_of}` }, "replay")] : null],
          eventLink(e.internal_id, e.id),
          preview(e.data),
        ]),
        empty(params),
        { class: "events" },
      ),
    );
    const meta = page.metadata;
    fill(
      scanned,
      meta.scan_limit
        ? meta.scan_complete
          ? `Searched ${meta.scanned} events.`
          : `Searched ${meta.scanned} events (the limit of one search); older events were not searched yet.`
        : null,
    );
    const more = meta.scan_limit && !meta.scan_complete && page.data.length < PAGE_SIZE ? "Search older →" : "Older →";
    fill(
      pager,
      params.get("cursor") ? h("a", { href: `#/events?${qs(base)}`, class: "button" }, "← Newest") : null,
      meta.next_cursor ? h("a", { href: `#/events?${qs({ ...base, cursor: meta.next_cursor })}`, class: "button", rel: "next" }, more) : null,
    );
  }
  await load();
  return { poll: load };
}

function empty(params) {
  const name = params.get("name");
  if (params.get("expression")) return `No events${name ? ` named ${name}` : ""} match ${params.get("expression")}.`;
  return name ? `No events named ${name}.` : "No events yet.";
}

function preview(data) {
  const text = JSON.stringify(data);
  return h("code", { class: "preview", title: text }, text.length > 90 ? `${text.slice(0, 90)}…` : text);
}

function searchForms(params, names, ctx) {
  const name = h("input", { name: "name", value: params.get("name"), list: "known-event-names", placeholder: "Event name, e.g. app/user.created", "aria-label": "Event name" });
  const expression = h("input", {
    name: "expression", value: params.get("expression"), placeholder: "Payload, e.g. event.data.amount > 100",
    "aria-label": "Payload expression", class: "mono", spellcheck: "false",
    title: "A CEL expression over the event (event.name, event.data, event.user, event.ts): the events for which it is true",
  });
  const byName = h(
    "form",
    { class: "filters", id: "event-filter" },
    name,
    h("datalist", { id: "known-event-names" }, names.map((x) => h("option", { value: x }))),
    expression,
    h("button", { type: "submit", class: "primary" }, "Filter"),
    h("a", { href: "#/events", class: "button" }, "Reset"),
  );
  byName.addEventListener("submit", (e) => {
    e.preventDefault();
    ctx.navigate(`#/events?${qs({ name: name.value.trim(), expression: expression.value.trim() })}`);
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

/** "Replay": send the event again as a new one (a confirm first), then open the new event. */
function replayButton(event, ctx) {
  if (event.name.startsWith("inngest/")) return null; // the engine's own: rerun the run instead
  const status = h("span", { id: "replay-status" });
  const start = h("button", { type: "button", id: "replay-event", title: "Send this event again, as a new event that triggers its functions" }, "Replay");
  const confirm = h(
    "span",
    { id: "confirm-replay", class: "small", hidden: true },
    "Send it again and trigger its functions? ",
    h("button", { type: "button", id: "confirm-replay-event", class: "primary", onclick: replay }, "Yes, replay"),
    h("button", { type: "button", onclick: () => ((confirm.hidden = true), (start.hidden = false)) }, "No"),
  );
  start.addEventListener("click", () => ((start.hidden = true), (confirm.hidden = false)));

  async function replay() {
    try {
      const made = await api(`v1/events/${enc(event.internal_id)}/replay`, { method: "POST" });
      ctx.navigate(`#/events/${enc(made.data.internal_id)}`);
    } catch (error) {
      notice(status, "error", error.message);
    }
  }
  return h("div", { class: "actions replay-event" }, start, confirm, status);
}

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
    replayButton(event, ctx),
    facts([
      ["Event id", h("span", { class: "mono" }, event.id)],
      ["Internal id", event.internal_id !== event.id ? h("span", { class: "mono" }, event.internal_id) : null],
      ["Received", time(event.received_at)],
      ["Timestamp", event.ts ? time(new Date(event.ts).toISOString()) : null],
      ["Version", event.v],
      ["Runs", h("a", { href: `#/runs?${qs({ event_id: event.internal_id })}` }, "list runs of this event")],
      ["Replay of", event.replay_of ? h("span", { id: "replay-of" }, eventLink(event.replay_of)) : null],
      ["Replays", (event.replays || []).length ? h("span", { id: "replays" }, event.replays.map((id, i) => [i ? ", " : "", eventLink(id)])) : null],
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
    refreshTimes(runsBox);
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
