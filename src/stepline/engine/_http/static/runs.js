// Runs: the filterable, live list (the run page is run.js): search by run id or a query
// (query.js), the trigger event's name, what a live run waits on, relative times, the
// columns a URL or saved view asks for; rows become cards on a phone.
import { ApiError, TERMINAL, ago, api, badge, eventLink, fill, functionLink, h, qs, refreshTimes, runDuration, runLink, table, time } from "./dom.js";
import * as bulk from "./bulk.js";
import * as query from "./query.js";

const STATUSES = ["Queued", "Running", "Completed", "Failed", "Cancelled"];
const RANGES = [
  ["", "Any time"], ["15m", "Last 15 minutes"], ["1h", "Last hour"], ["24h", "Last 24 hours"],
  ["7d", "Last 7 days"], ["custom", "Custom range"],
];
const RANGE_MS = { "15m": 9e5, "1h": 3.6e6, "24h": 8.64e7, "7d": 6.048e8 };
const PAGE_SIZE = 50;
const SCAN_POLL_MS = 15000;
const RUN_ID = /^[0-9A-HJKMNP-TV-Z]{1,26}$/;
// what holds a run back (`waiting.reason`) as the list shows it
const WAITING = {
  sleeping: "Sleeping",
  waiting_for_event: "Waiting for event",
  waiting_for_signal: "Waiting for signal",
  waiting_for_invoke: "Waiting for invoke",
  throttled: "Throttled",
  concurrency: "Concurrency-limited",
  debounced: "Debounced",
  batched: "Batching",
  priority: "Delayed by priority",
  paused: "Paused",
};

// -- the list ----------------------------------------------------------------------------

export async function list(view, _args, params, ctx) {
  const results = h("div", { id: "runs-table" });
  const pager = h("div", { class: "pager" });
  const selected = new Set(); // runs ticked for "Cancel selected" / "Replay selected"
  const actions = bulk.bar(selected, () => bulkFilter(params), () => load());
  const search = query.box(params, ctx);
  const columns = query.columnsOf(params);
  let last = "";
  let scanned = 0; // when the page was last read, if its query scans runs (metadata.exact false)
  let refused = false; // the query is a 400: shown once, not asked again until it changes

  async function fetchPage() {
    try {
      return await api(`v1/runs?${runQuery(params)}`);
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 400 || !params.get("query")) throw error;
      return { data: [], metadata: { next_cursor: null }, error };
    }
  }

  async function load(given) {
    const page = given || (await fetchPage());
    if (!ctx.alive()) return;
    if (page.error) {
      refused = true;
      return search.showError(page.error);
    }
    scanned = page.metadata.exact === false ? Date.now() : 0;
    const key = JSON.stringify(page);
    const going = page.data.some((run) => !TERMINAL.has(run.status)); // durations move on
    refreshTimes(results); // "3 min ago" moves on even when nothing else does
    if (key === last && !going) return;
    last = key;
    fill(results, runTable(page.data, "No runs match these filters.", { selected, changed: actions.changed }, columns));
    fill(pager, pagerLinks(params, page.metadata.next_cursor));
  }
  // both at once: the filter's function list and the first page
  const [known, first] = await Promise.all([api("v1/functions"), fetchPage()]);
  fill(view, h("h1", {}, "Runs"), search.el, query.views(params, ctx), filterForm(params, known.data, ctx), actions.el, results, pager);
  await load(first);
  // a query that scans runs is read again every SCAN_POLL_MS, not at every live tick
  return { poll: () => (refused || (scanned && Date.now() - scanned < SCAN_POLL_MS) ? null : load()) };
}

/** The query for GET v1/runs from the page's hash parameters. */
function runQuery(params) {
  const range = params.get("range") || "";
  let since = null;
  let until = null;
  if (RANGE_MS[range]) since = new Date(Date.now() - RANGE_MS[range]).toISOString();
  if (range === "custom") {
    since = localToIso(params.get("since"));
    until = localToIso(params.get("until"));
  }
  return qs({
    run_id: params.get("run_id"),
    function_id: params.get("function_id"),
    status: params.get("status"),
    event_id: params.get("event_id"),
    version: params.get("version"),
    since,
    until,
    query: params.get("query"),
    cursor: params.get("cursor"),
    limit: PAGE_SIZE,
  }) + attributeQuery(params);
}

/** The page's attribute filter ("name:value name2:value2") as repeated query values. */
function attributePairs(params) {
  return (params.get("attribute") || "").split(/\s+/).filter((pair) => pair.includes(":"));
}

function attributeQuery(params) {
  return attributePairs(params).map((pair) => `&attribute=${encodeURIComponent(pair)}`).join("");
}

/** The page's filters as a bulk action's filter; null if they name an event, version or run id. */
function bulkFilter(params) {
  if (params.get("event_id") || params.get("version") || params.get("run_id") || params.get("query")) return null;
  const query = new URLSearchParams(runQuery(params));
  const status = (params.get("status") || "").split(",").filter(Boolean);
  const where = { function_id: query.get("function_id"), status, since: query.get("since"), until: query.get("until") };
  const found = Object.fromEntries(Object.entries(where).filter(([, v]) => v && v.length));
  const pairs = attributePairs(params).map((pair) => [pair.slice(0, pair.indexOf(":")), pair.slice(pair.indexOf(":") + 1)]);
  if (pairs.length) found.attributes = Object.fromEntries(pairs);
  return found;
}

function localToIso(value) {
  if (!value) return null;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

function filterForm(params, known, ctx) {
  const chosen = new Set((params.get("status") || "").split(",").filter(Boolean));
  const range = params.get("range") || "";
  const custom = h(
    "span",
    { class: "custom-range", hidden: range !== "custom" },
    h("label", {}, "From ", h("input", { type: "datetime-local", name: "since", value: params.get("since") })),
    h("label", {}, "to ", h("input", { type: "datetime-local", name: "until", value: params.get("until") })),
  );
  const rangeSelect = h(
    "select",
    { name: "range", "aria-label": "Time range", onchange: (e) => (custom.hidden = e.target.value !== "custom") },
    RANGES.map(([value, label]) => h("option", { value, selected: value === range }, label)),
  );
  const runId = h("input", {
    type: "search", name: "run_id", value: params.get("run_id"), placeholder: "Run id", "aria-label": "Run id",
    size: 28, title: "A whole run id opens the run; its beginning lists the runs whose id starts so",
  });
  const form = h(
    "form",
    { class: "filters", id: "run-filters" },
    runId,
    h(
      "select",
      { name: "function_id", "aria-label": "Function" },
      h("option", { value: "" }, "All functions"),
      known.map((f) =>
        h("option", { value: f.function_id, selected: f.function_id === params.get("function_id") }, f.name || f.function_id),
      ),
    ),
    h(
      "fieldset",
      { class: "statuses" },
      h("legend", {}, "Status"),
      STATUSES.map((s) =>
        h("label", { class: `chip s-${s.toLowerCase()}` }, h("input", { type: "checkbox", name: "status", value: s, checked: chosen.has(s) }), s),
      ),
    ),
    rangeSelect,
    custom,
    h("input", { name: "event_id", placeholder: "Event id", value: params.get("event_id"), "aria-label": "Event id" }),
    h("input", { name: "version", placeholder: "App version", value: params.get("version"), "aria-label": "App version", size: 12 }),
    h("input", { name: "attribute", placeholder: "name:value", value: params.get("attribute"), "aria-label": "Attributes", size: 16, title: "Runs with these attributes: name:value, several separated by spaces" }),
    h("button", { type: "submit", class: "primary" }, "Apply"),
    h("a", { href: "#/runs", class: "button" }, "Reset"),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const isCustom = data.get("range") === "custom";
    const id = (data.get("run_id") || "").trim().toUpperCase();
    runId.setCustomValidity(id && !RUN_ID.test(id) ? "A run id has up to 26 characters: 0-9 and A-Z without I, L, O, U" : "");
    if (!runId.reportValidity()) return;
    if (id.length === 26 && (await exists(id))) return ctx.navigate(`#/runs/${id}`); // a whole id: open it
    ctx.navigate(
      "#/runs?" +
        qs({
          run_id: id,
          function_id: data.get("function_id"),
          status: data.getAll("status").join(","),
          range: data.get("range"),
          since: isCustom ? data.get("since") : "",
          until: isCustom ? data.get("until") : "",
          event_id: (data.get("event_id") || "").trim(),
          version: (data.get("version") || "").trim(),
          attribute: (data.get("attribute") || "").trim(),
          query: params.get("query"),
          columns: params.get("columns"),
        }),
    );
  });
  return form;
}

async function exists(runId) {
  try {
    await api(`v1/runs/${runId}`);
    return true;
  } catch {
    return false; // not found (or not readable): the list says "No runs match"
  }
}

function pagerLinks(params, next) {
  const base = Object.fromEntries(params.entries());
  delete base.cursor;
  return [
    params.get("cursor") ? h("a", { href: `#/runs?${qs(base)}`, class: "button" }, "← Newest") : null,
    next ? h("a", { href: `#/runs?${qs({ ...base, cursor: next })}`, class: "button", rel: "next" }, "Older →") : null,
  ];
}

// each column a query can show: its cell for a run (headers: query.COLUMNS)
const CELLS = {
  status: (run) => [badge(run.status), waiting(run.waiting)],
  id: (run) => runLink(run.run_id),
  function: (run) => functionLink(run.function_id),
  event: (run) => trigger(run),
  created: (run) => ago(run.created_at),
  started: (run) => (run.run_started_at ? time(run.run_started_at) : "—"),
  ended: (run) => (run.ended_at ? time(run.ended_at) : "—"),
  duration: (run) => runDuration(run),
  version: (run) => version(run.app_version),
  app: (run) => run.app_id || "—",
  attributes: (run) => Object.entries(run.attributes || {}).map(([k, v]) => h("span", { class: "chip" }, `${k}: ${v}`)),
  error: (run) => (run.status === "Failed" && run.output && run.output.name) || "",
};

/** A table of runs (the runs list, the event and function pages); `pick`: selectable. */
export function runTable(runs, empty, pick, columns = query.DEFAULT_COLUMNS) {
  return table(
    [...columns.map((c) => query.COLUMNS[c]), ...(pick ? ["Select"] : [])],
    runs.map((run) => [
      ...columns.map((c) => CELLS[c](run)),
      ...(pick ? [bulk.pick(run, pick.selected, pick.changed)] : []),
    ]),
    empty,
    { class: "runs" },
  );
}

/** The app version a run started on, linking to the runs started on it. */
function version(name) {
  if (!name) return h("span", { class: "muted" }, "—");
  return h("a", { href: `#/runs?${qs({ version: name })}`, class: "version" }, name);
}

/** What holds a run back, as a chip whose tooltip says until when, on what, in which step. */
function waiting(held) {
  if (!held) return null;
  const label = WAITING[held.reason] || held.reason;
  const details = [
    held.step ? `step ${held.step}` : null,
    held.event ? `event ${held.event}` : null,
    held.signal ? `signal ${held.signal}` : null,
    held.function_id ? `function ${held.function_id}` : null,
    held.key ? `key ${held.key}` : null,
    held.until ? `until ${new Date(held.until).toLocaleString()}` : null,
    held.since ? `since ${new Date(held.since).toLocaleString()}` : null,
    held.steps ? `${held.steps} steps waiting` : null,
  ].filter(Boolean);
  return h("span", { class: `chip waiting w-${held.reason}`, "data-reason": held.reason, title: details.join(" · ") || null }, label);
}

/** The trigger: its event's name linking to the event (the id in the tooltip), or the origin. */
function trigger(run) {
  const origin = run.origin || "";
  if (origin) return bulk.origin(run) || origin;
  const ids = run.event_ids || [];
  if (!ids.length) return h("span", { class: "muted" }, "—");
  const names = run.event_names || [];
  const link = eventLink(ids[0], names[0] || ids[0]);
  link.classList.toggle("mono", !names[0]);
  link.classList.add("event-name");
  link.title = ids[0];
  const more = ids.length > 1 ? h("span", { class: "muted", title: names.slice(1).join(", ") }, ` +${ids.length - 1}`) : "";
  return [link, more];
}
