// The event stream: events appear as they arrive (each poll reads only what came after the
// last one, GET v1/events?after=), each with the runs it started; a click shows an event's
// runs beside the stream. The engine's own events (inngest/function.finished, cron ticks...)
// are hidden unless "internal=true" is in the URL (the toggle sets it).
import { TERMINAL, ago, api, badge, enc, eventLink, fill, h, qs, refreshTimes } from "./dom.js";
import { runTable } from "./runs.js";

const FIRST_PAGE = 50;
const FOLLOW_PAGE = 100;
const KEPT = 200; // rows the stream keeps; older ones leave the page
const RECHECK_MS = 60_000; // how long a row's runs are looked at again while they run

export async function page(view, _args, params, ctx) {
  const internal = params.get("internal") === "true";
  const toggle = h("input", { type: "checkbox", id: "show-internal", checked: internal });
  toggle.addEventListener("change", () => ctx.navigate(`#/stream?${qs({ internal: toggle.checked ? "true" : null })}`));
  const list = h("ol", { id: "stream-list", class: "stream", "aria-live": "polite" });
  const side = h("aside", { id: "stream-runs", class: "stream-runs" }, h("p", { class: "muted" }, "Select an event to see its runs."));
  const status = h("span", { id: "stream-status", class: "muted" });
  fill(
    view,
    h("h1", {}, "Event stream"),
    h(
      "div",
      { class: "actions stream-bar" },
      h("label", { title: "The engine's own events: runs' ends, invocations, cron ticks, durable endpoints' triggers" }, toggle, " Show internal events"),
      status,
    ),
    h("div", { class: "stream-layout" }, list, side),
  );

  const rows = new Map(); // internal id -> { row, event }
  let selected = null;
  let selectedKey = "";
  const filter = { internal: internal ? "true" : "false", runs: "true" };

  function runsCell(event) {
    const linked = event.runs || [];
    if (!linked.length) return h("span", { class: "muted" }, "no runs");
    return linked.map((r) => h("a", { href: `#/runs/${enc(r.run_id)}`, class: "stream-run", title: r.run_id }, r.function_id, " ", badge(r.status)));
  }

  function render(event) {
    const known = rows.get(event.internal_id);
    const cells = [
      h("span", { class: "stream-when" }, ago(event.received_at)),
      h("strong", { class: "stream-name" }, event.name),
      eventLink(event.internal_id, event.id),
      preview(event.data),
      h("span", { class: "stream-runs-cell" }, runsCell(event)),
    ];
    if (known) {
      known.event = event;
      fill(known.row, cells);
      return known.row;
    }
    const row = h("li", { class: "stream-event", "data-id": event.internal_id, tabindex: "0" }, cells);
    row.addEventListener("click", (e) => {
      if (e.target.closest("a")) return; // links keep their own meaning
      choose(event.internal_id);
    });
    row.addEventListener("keydown", (e) => {
      if (e.key === "Enter") choose(event.internal_id);
    });
    rows.set(event.internal_id, { row, event });
    return row;
  }

  function add(events, newestFirst) {
    const fresh = [];
    for (const event of events) {
      const isNew = !rows.has(event.internal_id);
      const row = render(event);
      if (isNew) fresh.push(row);
    }
    if (newestFirst) list.append(...fresh);
    else list.prepend(...fresh.reverse());
    while (list.children.length > KEPT) {
      const last = list.lastElementChild;
      rows.delete(last.dataset.id);
      last.remove();
    }
    fill(status, `${rows.size} event${rows.size === 1 ? "" : "s"} shown; following new events.`);
    if (!rows.size) fill(status, internal ? "No events yet; new events appear here as they arrive." : "No events yet (internal events hidden); new events appear here as they arrive.");
  }

  async function choose(internalId) {
    selected = internalId;
    selectedKey = "";
    for (const [id, entry] of rows) entry.row.classList.toggle("selected", id === internalId);
    await showRuns();
  }

  async function showRuns() {
    if (!selected) return;
    const id = selected;
    const [found, linked] = await Promise.all([api(`v1/events/${enc(id)}`), api(`v1/events/${enc(id)}/runs`)]);
    if (!ctx.alive() || selected !== id) return;
    const key = JSON.stringify(linked);
    if (key === selectedKey) return refreshTimes(side);
    selectedKey = key;
    fill(
      side,
      h("h2", {}, found.data.name),
      h("p", {}, eventLink(found.data.internal_id, "Open the event →")),
      linked.data.length ? runTable(linked.data, "") : h("p", { class: "empty" }, "This event started no run."),
    );
  }

  const first = await api(`v1/events?${qs({ ...filter, limit: FIRST_PAGE })}`);
  if (!ctx.alive()) return null;
  let cursor = first.metadata.stream_cursor;
  add(first.data, true);

  function live(entry) {
    const young = Date.now() - new Date(entry.event.received_at).getTime() < RECHECK_MS;
    const runs = entry.event.runs || [];
    return young && (!runs.length || runs.some((r) => !TERMINAL.has(r.status)));
  }

  async function poll() {
    const next = await api(`v1/events?${qs({ ...filter, after: cursor, limit: FOLLOW_PAGE })}`);
    if (!ctx.alive()) return;
    cursor = next.metadata.stream_cursor;
    add(next.data, false);
    if ([...rows.values()].some(live)) {
      // runs still going (or not started yet): their newest state, one page for all
      const recent = await api(`v1/events?${qs({ ...filter, limit: FIRST_PAGE })}`);
      if (!ctx.alive()) return;
      for (const event of recent.data) if (rows.has(event.internal_id)) render(event);
    }
    refreshTimes(list);
    await showRuns();
  }
  return { poll };
}

function preview(data) {
  const text = JSON.stringify(data);
  return h("code", { class: "preview", title: text }, text.length > 70 ? `${text.slice(0, 70)}…` : text);
}
