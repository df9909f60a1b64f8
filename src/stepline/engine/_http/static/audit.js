// The audit log (GET v1/audit, admins): who did what through the API and the dashboard,
// newest first, with the role they had, what they acted on and how it ended (ok, refused,
// failed); one principal's entries with the filter, older pages by cursor.
import { api, enc, fill, h, qs, table, time } from "./dom.js";

const PAGE = 100;

export async function list(view, _args, params) {
  const principal = params.get("principal") || "";
  const cursor = params.get("cursor") || "";
  const input = h("input", { name: "principal", value: principal, placeholder: "principal", "aria-label": "Principal" });
  const filter = h(
    "form",
    { class: "filters", id: "audit-filter" },
    input,
    h("button", { type: "submit", class: "primary" }, "Filter"),
    h("a", { href: "#/audit", class: "button" }, "Reset"),
  );
  filter.addEventListener("submit", (e) => {
    e.preventDefault();
    location.hash = `#/audit?${qs({ principal: input.value.trim() || undefined })}`;
  });
  const rows = h("div", { id: "audit-table" });
  fill(view, h("h1", {}, "Audit log"), filter, rows);

  async function load() {
    const page = await api(`v1/audit?${qs({ principal: principal || undefined, cursor: cursor || undefined, limit: PAGE })}`);
    fill(
      rows,
      table(
        ["When", "Who", "Role", "Action", "Target", "Outcome"],
        page.data.map((entry) => [
          time(entry.at),
          h("a", { href: `#/audit?${qs({ principal: entry.principal })}`, class: "audit-principal" }, entry.principal,
            entry.via ? h("span", { class: "muted small" }, ` via ${entry.via}`) : null),
          entry.role || h("span", { class: "muted" }, "—"),
          h("span", { class: "mono" }, entry.action),
          h("span", { class: "mono" }, entry.target),
          h("span", { class: `outcome outcome-${enc(entry.outcome)}`, title: `HTTP ${entry.status}` }, entry.outcome),
        ]),
        "Nothing recorded yet.",
        { class: "audit" },
      ),
      page.metadata.next_cursor
        ? h("a", { href: `#/audit?${qs({ principal: principal || undefined, cursor: page.metadata.next_cursor })}`, class: "button", rel: "next" }, "Older →")
        : null,
    );
  }
  await load();
  return { poll: cursor ? null : load };
}
