// Crons: every cron trigger with its next ticks (UTC and local), the tick the scheduler has
// queued, the ticks it missed while no engine ran, and its function's last runs.
import { ago, api, badge, code, enc, fill, functionLink, h, refreshTimes, table } from "./dom.js";

export async function list(view, _args, _params, ctx) {
  const box = h("div", { id: "crons-table" });
  fill(
    view,
    h("h1", {}, "Crons"),
    h("p", { class: "muted" }, "Scheduled functions: their next ticks, the runs they started, and ticks missed while no engine ran (each fires once, late, when one runs again)."),
    box,
  );
  let last = "";

  async function load() {
    const found = await api("v1/crons");
    if (!ctx.alive()) return;
    refreshTimes(box);
    const key = JSON.stringify(found.data);
    if (key === last) return;
    last = key;
    fill(
      box,
      table(
        ["Function", "Schedule", "Next ticks (UTC / local)", "Missed", "Last runs"],
        found.data.map((c) => [
          [functionLink(c.function_id), c.paused ? [" ", h("span", { class: "chip w-paused", title: `paused; ticks ${c.paused.crons === "skip" ? "start nothing" : "start runs that wait"}` }, "paused")] : null],
          [code(c.cron), c.timezone !== "UTC" ? h("div", { class: "muted small" }, c.timezone) : null, c.jitter ? h("div", { class: "muted small" }, `jitter ${c.jitter} s`) : null],
          h("ul", { class: "ticks" }, c.next_ticks.map((t) => h("li", {}, h("time", { datetime: t, class: "mono utc" }, utc(t)), h("span", { class: "muted local" }, ` · ${local(t)}`)))),
          missed(c),
          c.last_runs.length
            ? h("ul", { class: "last-runs" }, c.last_runs.map((r) => h("li", {}, h("a", { href: `#/runs/${enc(r.run_id)}`, title: r.run_id }, badge(r.status)), " ", ago(r.created_at))))
            : h("span", { class: "muted" }, "no runs yet"),
        ]),
        "No function has a cron trigger.",
        { class: "crons" },
      ),
    );
  }
  await load();
  return { poll: load };
}

function missed(c) {
  if (!c.missed_ticks) return h("span", { class: "muted missed-none" }, "none");
  const more = c.missed_ticks >= 1000 ? "1000+" : String(c.missed_ticks);
  return h("span", { class: "chip w-throttled missed", title: `since ${c.missed_since} (UTC)` }, `${more} missed since `, h("time", { datetime: c.missed_since }, utc(c.missed_since)));
}

/** "2027-01-15 08:01 UTC" */
function utc(iso) {
  return `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;
}

function local(iso) {
  return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}
