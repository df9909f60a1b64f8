// Apps: what is synced, from where, when, the last sync error, and re-sync buttons; the
// registered versions of each app with the runs still live on each (to see one drain).
import { api, code, fill, h, notice, qs, table, time } from "./dom.js";
import { loadWorkers, workerTables } from "./workers.js";

export async function list(view, _args, _params, ctx) {
  const message = h("div", { id: "sync-message" });
  const rows = h("div", { id: "apps-table" });
  const versions = h("div", { id: "app-versions" });
  const workers = h("div", { id: "app-workers" });
  const url = h("input", { name: "url", type: "url", placeholder: "http://127.0.0.1:8000/api/inngest", required: true, "aria-label": "App URL" });
  const add = h("form", { class: "filters" }, url, h("button", { type: "submit" }, "Sync app"));
  add.addEventListener("submit", (e) => {
    e.preventDefault();
    sync({ url: url.value.trim() });
  });
  const all = h("button", { type: "button", id: "resync-all", onclick: () => sync(undefined) }, "Re-sync all");
  fill(view, h("h1", {}, "Apps ", all), message, rows, workers, versions, h("h2", {}, "Sync a new app"), add);
  let last = "";

  async function sync(body) {
    notice(message, "", "Syncing…");
    try {
      const answer = await api("v1/apps/sync", { method: "POST", body });
      const results = Array.isArray(answer.data) ? answer.data : [answer.data];
      const failed = results.filter((r) => !r.ok);
      if (!results.length) notice(message, "", "Nothing to re-sync: apps served in-process sync themselves.");
      else if (failed.length) notice(message, "error", failed.map((r) => [h("strong", {}, r.url), `: ${r.error}`, h("br")]));
      else notice(message, "ok", `Synced ${results.map((r) => r.url).join(", ")}.`);
    } catch (error) {
      notice(message, "error", `Sync failed: ${error.message}`);
    }
    last = "";
    await load();
  }

  async function load() {
    const apps = (await api("v1/apps")).data;
    const [byApp, connected] = await Promise.all([
      Promise.all(apps.map((app) => api(`v1/apps/${encodeURIComponent(app.app_id)}/versions`).then((v) => v.data, () => []))),
      loadWorkers(apps),
    ]);
    if (!ctx.alive()) return;
    const key = JSON.stringify([apps, byApp, connected]);
    if (key === last) return;
    last = key;
    fill(workers, workerTables(connected));
    fill(versions, versionTables(apps, byApp));
    fill(
      rows,
      table(
        ["App", "URL", "SDK", "Functions", "Last sync", "Status", ""],
        apps.map((app) => {
          const local = app.url.startsWith("inprocess:");
          const connect = app.url.startsWith("connect:");
          return [
            h("strong", {}, app.app_id),
            code(app.url),
            [app.sdk, app.framework ? ` (${app.framework})` : ""],
            h("a", { href: "#/functions" }, String(app.functions)),
            time(app.synced_at),
            app.error
              ? h("span", { class: "sync-error" }, h("span", { class: "badge s-failed" }, "error"), " ", app.error)
              : h("span", { class: "badge s-completed" }, "synced"),
            local || connect
              ? h("span", { class: "muted small" }, local ? "in-process" : "Connect workers")
              : h("button", { type: "button", class: "resync", onclick: () => sync({ url: app.url }) }, "Re-sync"),
          ];
        }),
        "No apps yet. Start your app and sync it below, or pass -u <url> to stepline dev.",
        { class: "apps" },
      ),
    );
  }
  await load();
  return { poll: load };
}

/** One table per app registered with versions: newest first, the live runs on each. */
function versionTables(apps, byApp) {
  const shown = apps.map((app, i) => [app, byApp[i] || []]).filter(([, found]) => found.length);
  if (!shown.length) return null;
  return [
    h("h2", {}, "Versions"),
    h("p", { class: "muted small" }, "New runs start on the latest version; a run stays on the version it started on (pinned) until it ends. A version whose live runs reach 0 has drained and can be retired: stepline apps retire APP VERSION."),
    shown.map(([app, found]) =>
      h(
        "section",
        { class: "versions", "data-app": app.app_id },
        h("h3", {}, app.app_id),
        table(
          ["Version", "URL", "Live runs", "Last sync", ""],
          found.map((v) => [
            h("a", { href: `#/runs?${qs({ version: v.version })}` }, h("strong", {}, v.version)),
            code(v.url),
            h("span", { class: "live-runs" }, String(v.live_runs)),
            time(v.synced_at),
            v.latest ? h("span", { class: "badge s-completed" }, "latest") : v.live_runs ? h("span", { class: "badge s-running" }, "draining") : h("span", { class: "badge s-queued" }, "drained"),
          ]),
          "",
          { class: "app-versions" },
        ),
      ),
    ),
  ];
}
