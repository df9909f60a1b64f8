// The runs page's query box: a CEL expression over a run's fields (docs/dashboard.md, "Finding
// runs"), field names completed as they are typed, a bad query's error drawn under its column,
// the table's columns, and saved views (a named query with its columns) that reopen by URL.
import { ApiError, api, enc, fill, h, qs } from "./dom.js";

// every name a query reads (the engine's FIELDS, src/stepline/engine/_store/run_query.py)
export const FIELDS = {
  "status": "Queued, Running, Completed, Failed or Cancelled",
  "function_id": "the function id",
  "app_id": "the app id",
  "run_id": "the run id",
  "version": "the app version the run started on",
  "created": "when the run was created (timestamp)",
  "started": "when it started (timestamp)",
  "ended": "when it ended (timestamp)",
  "duration": "ended - started (duration)",
  "attributes": "its attributes: attributes.name",
  "event": "the trigger event: event.name, event.data",
  "events": "every trigger event (list)",
  "output": "its output (JSON): output.total",
  "error": "a failed run's error name",
  "now": "the time of the request: now - duration(\"1h\")",
};
// what follows a field's dot
const MEMBERS = { event: ["name", "data", "id", "ts", "user"] };
const FUNCTIONS = ["timestamp(", "duration(", "has(", "size(", "matches(", "startsWith(", "contains(", "exists("];

// the table's columns (the engine's saved views accept these names)
export const COLUMNS = {
  status: "Status", id: "Run", function: "Function", event: "Trigger", created: "Created",
  started: "Started", ended: "Ended", duration: "Duration", version: "Version", app: "App",
  attributes: "Attributes", error: "Error",
};
export const DEFAULT_COLUMNS = ["status", "id", "function", "event", "created", "duration", "version"];

/** The columns the page's URL asks for (`columns=a,b`), else the default ones. */
export function columnsOf(params) {
  const asked = (params.get("columns") || "").split(",").filter((c) => c in COLUMNS);
  return asked.length ? asked : DEFAULT_COLUMNS;
}

/** The query box: `el`, and `showError(error)` for a 400 of the runs list. */
export function box(params, ctx) {
  const input = h("input", {
    type: "search", id: "run-query", name: "query", value: params.get("query"), autocomplete: "off",
    spellcheck: "false", placeholder: 'status == "Failed" && created > now - duration("1h")',
    "aria-label": "Query", role: "combobox", "aria-autocomplete": "list", "aria-controls": "query-completions",
    "aria-expanded": "false",
  });
  const list = h("ul", { id: "query-completions", class: "completions", role: "listbox", hidden: true });
  const error = h("div", { id: "query-error", class: "query-error", role: "alert", hidden: true });
  const completion = completer(input, list);
  const form = h(
    "form",
    { class: "query", id: "run-query-form", role: "search" },
    h("div", { class: "query-input" }, input, list),
    h("button", { type: "submit", class: "primary" }, "Search"),
    error,
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    completion.close();
    const base = Object.fromEntries(params.entries());
    delete base.cursor;
    ctx.navigate(`#/runs?${qs({ ...base, query: input.value.trim() })}`);
  });
  function showError(failure) {
    const details = (failure.body && failure.body.details) || {};
    const column = details.column || 1;
    const text = input.value;
    input.setAttribute("aria-invalid", "true");
    error.dataset.column = String(column);
    fill(
      error,
      h("pre", { class: "query-caret" }, text, "\n", " ".repeat(Math.max(0, column - 1)) + "^"),
      h("span", {}, `Column ${column}: ${details.reason || failure.message}`),
    );
    error.hidden = false;
    input.focus();
    input.setSelectionRange(column - 1, column - 1);
  }
  return { el: form, showError };
}

/** Completion of field names (and `event.` members) in `input`, listed in `list`. */
function completer(input, list) {
  let options = [];
  let active = 0;
  let start = 0;

  function close() {
    options = [];
    list.hidden = true;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
  }
  function suggest() {
    const caret = input.selectionStart ?? input.value.length;
    const before = input.value.slice(0, caret);
    if ((before.match(/"/g) || []).length % 2) return close(); // inside a string
    const member = before.match(/(?:^|[^\w.])([A-Za-z_]\w*)\.(\w*)$/);
    const word = before.match(/(?:^|[^\w."])([A-Za-z_]\w*)$/);
    let found = [];
    if (member && MEMBERS[member[1]]) {
      found = MEMBERS[member[1]].filter((m) => m.startsWith(member[2]));
      start = caret - member[2].length;
    } else if (word) {
      found = [...Object.keys(FIELDS), ...FUNCTIONS].filter((f) => f.startsWith(word[1]) && f !== word[1]);
      start = caret - word[1].length;
    }
    if (!found.length) return close();
    options = found.slice(0, 12);
    active = 0;
    draw();
  }
  function draw() {
    fill(
      list,
      options.map((name, i) =>
        h(
          "li",
          {
            id: `query-option-${i}`, role: "option", "aria-selected": i === active ? "true" : "false",
            class: i === active ? "active" : null, "data-value": name,
            onmousedown: (e) => { e.preventDefault(); accept(name); },
          },
          h("code", {}, name),
          FIELDS[name] ? h("span", { class: "muted" }, ` ${FIELDS[name]}`) : null,
        ),
      ),
    );
    list.hidden = false;
    input.setAttribute("aria-expanded", "true");
    input.setAttribute("aria-activedescendant", `query-option-${active}`);
  }
  function accept(name) {
    const caret = input.selectionStart ?? input.value.length;
    input.value = input.value.slice(0, start) + name + input.value.slice(caret);
    const at = start + name.length;
    input.setSelectionRange(at, at);
    close();
    input.focus();
  }
  input.addEventListener("input", suggest);
  input.addEventListener("blur", () => setTimeout(close, 100));
  input.addEventListener("keydown", (e) => {
    if (list.hidden || !options.length) return;
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      active = (active + (e.key === "ArrowDown" ? 1 : options.length - 1)) % options.length;
      draw();
    } else if (e.key === "Tab" || e.key === "Enter") {
      e.preventDefault();
      accept(options[active]);
    } else if (e.key === "Escape") {
      close();
    }
  });
  return { close };
}

/** The saved views and the column chooser: open, save, delete; the link shares the page. */
export function views(params, ctx) {
  const chosen = columnsOf(params);
  const select = h("select", { id: "saved-views", "aria-label": "Saved views" }, h("option", { value: "" }, "Saved views…"));
  const name = h("input", { id: "view-name", placeholder: "View name", "aria-label": "View name", size: 14, maxlength: 80 });
  const status = h("span", { class: "muted", id: "view-status", role: "status" });
  let saved = [];

  async function refresh() {
    saved = (await api("v1/views")).data;
    fill(
      select,
      h("option", { value: "" }, saved.length ? "Saved views…" : "No saved views"),
      saved.map((v) => h("option", { value: v.name }, v.name)),
    );
  }
  select.addEventListener("change", () => {
    const view = saved.find((v) => v.name === select.value);
    if (view) ctx.navigate(viewUrl(view.query, view.columns));
  });
  const save = h("button", { type: "button", id: "save-view" }, "Save view");
  save.addEventListener("click", async () => {
    const label = name.value.trim();
    if (!label) {
      name.setCustomValidity("Name the view to save it");
      name.reportValidity();
      return;
    }
    name.setCustomValidity("");
    try {
      await api(`v1/views/${enc(label)}`, { method: "PUT", body: { query: params.get("query") || "", columns: chosen } });
      status.textContent = `Saved “${label}”`;
      await refresh();
    } catch (failure) {
      status.textContent = failure instanceof ApiError ? failure.message : String(failure);
    }
  });
  const remove = h("button", { type: "button", id: "delete-view", title: "Delete the chosen saved view" }, "Delete");
  remove.addEventListener("click", async () => {
    if (!select.value) return;
    await api(`v1/views/${enc(select.value)}`, { method: "DELETE" });
    status.textContent = `Deleted “${select.value}”`;
    await refresh();
  });
  const picker = h(
    "details",
    { class: "columns", id: "column-picker" },
    h("summary", {}, "Columns"),
    Object.entries(COLUMNS).map(([key, label]) =>
      h("label", {}, h("input", { type: "checkbox", value: key, checked: chosen.includes(key) }), ` ${label}`),
    ),
  );
  picker.addEventListener("change", () => {
    const picked = [...picker.querySelectorAll("input:checked")].map((i) => i.value);
    const base = Object.fromEntries(params.entries());
    ctx.navigate(`#/runs?${qs({ ...base, columns: picked.join(",") })}`);
  });
  const share = h("a", { href: viewUrl(params.get("query") || "", chosen), id: "share-view", title: "This query and these columns, as a link" }, "Link");
  refresh().catch(() => (status.textContent = "Saved views are not available"));
  return h("div", { class: "views" }, select, remove, name, save, share, picker, status);
}

/** The runs page for a query and columns: what a saved view opens and a link shares. */
export function viewUrl(query, columns) {
  return `#/runs?${qs({ query, columns: columns.join(",") })}`;
}
