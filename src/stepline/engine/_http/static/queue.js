// The queue: per function, runs queued and running, calls in flight, waiting (parked on a
// concurrency limit) and throttled, beside the limits configured; per concurrency key, the
// slots held and calls parked against its limit.
import { api, code, fill, functionLink, h, table } from "./dom.js";

export async function list(view, _args, _params, ctx) {
  const functions = h("div", { id: "queue-functions" });
  const keys = h("div", { id: "queue-keys" });
  fill(
    view,
    h("h1", {}, "Queue"),
    h("p", { class: "muted" }, "What runs now and what waits: calls in flight, calls parked on a full concurrency key, runs held by a throttle."),
    h("h2", {}, "By function"),
    functions,
    h("h2", {}, "By concurrency key"),
    keys,
  );
  let last = "";

  async function load() {
    const found = (await api("v1/queue")).data;
    if (!ctx.alive()) return;
    const key = JSON.stringify(found);
    if (key === last) return;
    last = key;
    fill(
      functions,
      table(
        ["Function", "In flight", "Waiting", "Throttled", "Queued", "Running", "Limits"],
        found.functions.map((f) => [
          functionLink(f.function_id),
          count(f.in_flight, "in-flight"),
          count(f.waiting, "waiting"),
          count(f.throttled, "throttled"),
          count(f.queued, "queued"),
          count(f.running, "running"),
          limits(f.limits),
        ]),
        "No function has a flow-control limit or a live run.",
        { class: "queue" },
      ),
    );
    fill(
      keys,
      table(
        ["Key", "Function", "In flight", "Waiting"],
        found.keys.map((k) => [
          code(k.key),
          k.function_id ? functionLink(k.function_id) : h("span", {}, `${k.scope}: `, k.functions.map((id, i) => [i ? ", " : "", functionLink(id)])),
          h("span", { class: "count in-flight" }, k.limit === null ? String(k.in_flight) : `${k.in_flight} / ${k.limit}`),
          count(k.waiting, "waiting"),
        ]),
        "No call holds or waits for a concurrency slot.",
        { class: "queue-keys" },
      ),
    );
  }
  await load();
  return { poll: load };
}

function count(n, kind) {
  return h("span", { class: `count ${kind}${n ? "" : " muted"}` }, String(n));
}

function limits(l) {
  const parts = [];
  for (const c of l.concurrency) parts.push(`concurrency ${c.limit}${c.key ? ` per ${c.key}` : ""}${c.scope !== "fn" ? ` (${c.scope})` : ""}`);
  if (l.throttle) parts.push(`throttle ${l.throttle.limit} / ${seconds(l.throttle.period)}${l.throttle.burst ? ` (burst ${l.throttle.burst})` : ""}${l.throttle.key ? ` per ${l.throttle.key}` : ""}`);
  if (l.rate_limit) parts.push(`rate limit ${l.rate_limit.limit} / ${seconds(l.rate_limit.period)}${l.rate_limit.key ? ` per ${l.rate_limit.key}` : ""}`);
  return parts.length ? h("ul", { class: "limits" }, parts.map((p) => h("li", {}, p))) : h("span", { class: "muted" }, "none");
}

function seconds(s) {
  if (s % 86400 === 0) return `${s / 86400} d`;
  if (s % 3600 === 0) return `${s / 3600} h`;
  if (s % 60 === 0) return `${s / 60} min`;
  return `${s} s`;
}
