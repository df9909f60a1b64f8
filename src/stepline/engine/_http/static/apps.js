// Apps: what is synced, from where, when, the last sync error, and re-sync buttons; the
// registered versions of each app with the runs still live on each (to see one drain);
// the last deploy check CI reported for each app (v1/deploy-checks): whether its recorded
// runs replay on the new code, and each function's run verdicts.
import { api, code, fill, h, notice, qs, table, time } from "./dom.js";
import { loadWorkers, workerTables } from "./workers.js";

export async function list(view, _args, _params, ctx) {
  const message = h("div", { id: "sync-message" });
  const rows = h("div", { id: "apps-table" });
  const versions = h("div", { id: "app-versions" });
  const workers = h("div", { id: "app-workers" });
  const url = h("input", { name: "url", type: "url", placeholder: "http://127.0.0.1:8000/api/inngest", required: true, "aria-label": "App URL" });
  const add = h("form", { class: "filters sync-app" }, url, h("button", { type: "submit" }, "Sync app"));
  add.addEventListener("submit", (e) => {
    e.preventDefault();
    sync({ url: url.value.trim() });
  });
  const all = h("button", { type: "button", id: "resync-all", onclick: () => sync(undefined) }, "Re-sync all");
  fill(view, h("h1", {}, "Apps ", all), message, rows, workers, versions, h("h2", { class: "sync-app" }, "Sync a new app"), add);
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
    const [byApp, connected, checks] = await Promise.all([
      Promise.all(apps.map((app) => api(`v1/apps/${encodeURIComponent(app.app_id)}/versions`).then((v) => v.data, () => []))),
      loadWorkers(apps),
      Promise.all(apps.map((app) => api(`v1/deploy-checks?${qs({ app_id: app.app_id, limit: 1 })}`).then((c) => c.data[0] || null, () => null))),
    ]);
    if (!ctx.alive()) return;
    const key = JSON.stringify([apps, byApp, connected, checks]);
    if (key === last) return;
    last = key;
    fill(workers, workerTables(connected));
    fill(versions, versionTables(apps, byApp));
    fill(
      rows,
      table(
        ["App", "URL", "SDK", "Functions", "Last sync", "Status", "Deploy check", ""],
        apps.map((app, i) => {
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
            checks[i] ? deployCheck(app.app_id, checks[i]) : null,
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

/** The app's part of a deploy check: when, its verdict ("ok", or "N of M runs would
 * diverge") and, folded, its functions with each replayed run's verdict. */
function deployCheck(appId, check) {
  const functions = (check.report.functions || []).filter((f) => f.app_id === appId);
  const sum = (key) => functions.reduce((n, f) => n + ((f.counts && f.counts[key]) || 0), 0);
  const [runs, diverged, failed] = [sum("runs"), sum("diverged"), sum("failed")];
  const verdict = !diverged && !failed
    ? h("span", { class: "badge s-completed" }, "ok")
    : h("span", { class: "badge s-failed" }, diverged ? `${diverged} of ${runs} runs would diverge` : `${failed} of ${runs} runs failed`);
  return h(
    "details",
    { class: "deploy-check", "data-app": appId, "data-ok": String(!diverged && !failed) },
    h("summary", {}, verdict, " ", time(check.report.checked_at || check.received_at)),
    h("p", { class: "muted small" }, code(check.report.target || ""), ` · ${runs} runs replayed`),
    functions.map((f) =>
      h("div", { class: "deploy-check-function", "data-function": f.function_id },
        h("strong", {}, f.function_id),
        h("ul", {}, (f.results || []).map((r) =>
          h("li", { class: `verdict-${r.verdict}` },
            h("a", { href: `#/runs/${encodeURIComponent(r.run_id)}`, class: "mono" }, r.run_id), " ",
            h("span", { class: `badge ${r.verdict === "ok" ? "s-completed" : r.verdict === "inconclusive" ? "s-queued" : "s-failed"}` }, r.verdict),
            r.summary ? [" ", r.summary] : null,
            r.fix ? h("div", { class: "muted small" }, "Fix: ", r.fix) : null))))),
  );
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
