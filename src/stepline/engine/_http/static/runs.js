// Runs: the filterable, live list (the run page is run.js).
import { TERMINAL, api, badge, eventLink, fill, functionLink, h, qs, runDuration, runLink, table, time } from "./dom.js";
import * as bulk from "./bulk.js";

const STATUSES = ["Queued", "Running", "Completed", "Failed", "Cancelled"];
const RANGES = [
  ["", "Any time"], ["15m", "Last 15 minutes"], ["1h", "Last hour"], ["24h", "Last 24 hours"],
  ["7d", "Last 7 days"], ["custom", "Custom range"],
];
const RANGE_MS = { "15m": 9e5, "1h": 3.6e6, "24h": 8.64e7, "7d": 6.048e8 };
const PAGE_SIZE = 50;

// -- the list ----------------------------------------------------------------------------

export async function list(view, _args, params, ctx) {
  const results = h("div", { id: "runs-table" });
  const pager = h("div", { class: "pager" });
  const selected = new Set(); // runs ticked for "Cancel selected" / "Replay selected"
  const actions = bulk.bar(selected, () => bulkFilter(params), () => load());
  let last = "";

  async function load(given) {
    const page = given || (await api(`v1/runs?${runQuery(params)}`));
    if (!ctx.alive()) return;
    const key = JSON.stringify(page);
    const going = page.data.some((run) => !TERMINAL.has(run.status)); // durations move on
    if (key === last && !going) return;
    last = key;
    fill(results, runTable(page.data, "No runs match these filters.", { selected, changed: actions.changed }));
    fill(pager, pagerLinks(params, page.metadata.next_cursor));
  }
  // both at once: the filter's function list and the first page
  const [known, first] = await Promise.all([api("v1/functions"), api(`v1/runs?${runQuery(params)}`)]);
  fill(view, h("h1", {}, "Runs"), filterForm(params, known.data, ctx), actions.el, results, pager);
  await load(first);
  return { poll: () => load() };
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
    function_id: params.get("function_id"),
    status: params.get("status"),
    event_id: params.get("event_id"),
    version: params.get("version"),
    since,
    until,
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

/** The page's filters as a bulk action's filter; null if they name an event or version. */
function bulkFilter(params) {
  if (params.get("event_id") || params.get("version")) return null;
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
  const form = h(
    "form",
    { class: "filters", id: "run-filters" },
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
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const isCustom = data.get("range") === "custom";
    ctx.navigate(
      "#/runs?" +
        qs({
          function_id: data.get("function_id"),
          status: data.getAll("status").join(","),
          range: data.get("range"),
          since: isCustom ? data.get("since") : "",
          until: isCustom ? data.get("until") : "",
          event_id: (data.get("event_id") || "").trim(),
          version: (data.get("version") || "").trim(),
          attribute: (data.get("attribute") || "").trim(),
        }),
    );
  });
  return form;
}

function pagerLinks(params, next) {
  const base = Object.fromEntries(params.entries());
  delete base.cursor;
  return [
    params.get("cursor") ? h("a", { href: `#/runs?${qs(base)}`, class: "button" }, "← Newest") : null,
    next ? h("a", { href: `#/runs?${qs({ ...base, cursor: next })}`, class: "button", rel: "next" }, "Older →") : null,
  ];
}

/** A table of runs (the runs list, the event and function pages); `pick`: selectable. */
export function runTable(runs, empty, pick) {
  return table(
    ["Status", "Run", "Function", "Trigger", "Created", "Duration", "Version", ...(pick ? ["Select"] : [])],
    runs.map((run) => [
      [badge(run.status), run.waiting ? h("span", { class: "chip" }, run.waiting.reason) : null],
      runLink(run.run_id),
      functionLink(run.function_id),
      trigger(run),
      time(run.created_at),
      runDuration(run),
      version(run.app_version),
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

function trigger(run) {
  const origin = run.origin || "";
  if (origin) return bulk.origin(run) || origin;
  const ids = run.event_ids || [];
  if (!ids.length) return h("span", { class: "muted" }, "—");
  return [eventLink(ids[0]), ids.length > 1 ? ` +${ids.length - 1}` : ""];
}
