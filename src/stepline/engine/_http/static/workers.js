// Apps page: the Connect workers of each app served over Connect (GET
// /v1/apps/{id}/workers): instance, node, SDK, version, functions, calls in flight,
// connected since, last heartbeat and status (ready, draining, connecting).
import { api, code, h, table, time } from "./dom.js";

/** The workers of each connect:// app, fetched in parallel (an error: none shown). */
export async function loadWorkers(apps) {
  const served = apps.filter((app) => app.url.startsWith("connect:"));
  const found = await Promise.all(served.map((app) => api(`v1/apps/${encodeURIComponent(app.app_id)}/workers`).then((w) => w.data, () => [])));
  return served.map((app, i) => [app, found[i]]);
}

const BADGE = { ready: "s-completed", draining: "s-running", connecting: "s-queued" };

/** One table per Connect app: its connected workers (or a note that none is). */
export function workerTables(byApp) {
  if (!byApp.length) return null;
  return [
    h("h2", {}, "Connect workers"),
    h("p", { class: "muted small" }, "Workers that opened a socket to the engine (to the node named) and take their app's calls over it. A draining worker finishes its calls in flight and gets no new one."),
    byApp.map(([app, workers]) =>
      h(
        "section",
        { class: "connect-workers", "data-app": app.app_id },
        h("h3", {}, app.app_id),
        table(
          ["Instance", "Node", "SDK", "Version", "Functions", "In flight", "Connected", "Last heartbeat", "Status"],
          workers.map((w) => [
            h("strong", { title: w.connection_id }, w.instance_id),
            code(w.node),
            [w.sdk, w.framework ? ` (${w.framework})` : ""],
            w.versions[app.app_id] || h("span", { class: "muted" }, "—"),
            h("span", { class: "worker-functions", title: w.functions.join("\n") }, String(w.functions.length)),
            h("span", { class: "in-flight" }, w.max_concurrency ? `${w.in_flight} / ${w.max_concurrency}` : String(w.in_flight)),
            time(w.connected_at),
            time(w.last_heartbeat_at),
            h("span", { class: `badge worker-status ${BADGE[w.status] || "s-queued"}` }, w.status),
          ]),
          "No worker connected: calls wait up to 30 s for one, then fail and are retried.",
          { class: "workers" },
        ),
      ),
    ),
  ];
}
