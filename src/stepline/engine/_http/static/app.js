// The dashboard's router and live-update loop. Pages live in runs.js, run.js, events.js,
// functions.js, apps.js, approvals.js, conversations.js and reference.js; each renders into the view
// and may return { poll }, which is called every few seconds while "Live" is on and the
// tab is visible. Lists are walked with the keyboard (keys.js).
import { fill, h } from "./dom.js";
import { listKeys } from "./keys.js";
import * as run from "./run.js";
import * as runs from "./runs.js";
import * as events from "./events.js";
import * as stream from "./stream.js";
import * as crons from "./crons.js";
import * as queue from "./queue.js";
import * as functions from "./functions.js";
import * as apps from "./apps.js";
import * as approvals from "./approvals.js";
import * as conversations from "./conversations.js";
import * as reference from "./reference.js";
import * as audit from "./audit.js";

const POLL_MS = 2000;
const ROUTES = [
  [/^runs$/, runs.list, "runs"],
  [/^runs\/([^/]+)$/, run.page, "runs"],
  [/^events$/, events.list, "events"],
  [/^events\/([^/]+)$/, events.page, "events"],
  [/^stream$/, stream.page, "stream"],
  [/^crons$/, crons.list, "crons"],
  [/^queue$/, queue.list, "queue"],
  [/^functions$/, functions.list, "functions"],
  [/^functions\/(.+)$/, functions.page, "functions"],
  [/^apps$/, apps.list, "apps"],
  [/^approvals$/, approvals.list, "approvals"],
  [/^conversations\/(.+)$/, conversations.page, "runs"],
  [/^reference$/, reference.page, "reference"],
  [/^audit$/, audit.list, "audit"],
];

const view = document.getElementById("view");
const live = document.getElementById("live");
const banner = document.getElementById("banner");
let generation = 0;
let current = null;
let polling = false;

function route() {
  const raw = location.hash.replace(/^#\/?/, "");
  const at = raw.indexOf("?");
  const path = at < 0 ? raw : raw.slice(0, at);
  const params = new URLSearchParams(at < 0 ? "" : raw.slice(at + 1));
  return { path: path || "runs", params };
}

async function navigate() {
  const gen = ++generation;
  current = null;
  const { path, params } = route();
  const found = ROUTES.map(([re, page, nav]) => [path.match(re), page, nav]).find(([m]) => m);
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", Boolean(found) && link.dataset.nav === found[2]);
  }
  if (!found) {
    fill(view, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/runs" }, "Back to runs")));
    return;
  }
  const [match, page] = found;
  const args = match.slice(1).map(decodeURIComponent);
  const ctx = { alive: () => gen === generation, navigate: (hash) => (location.hash = hash) };
  // each visit draws into an element of its own: an answer that arrives after the user
  // moved on (a page's first read or a poll in flight) lands in a detached element
  const root = h("div", { class: "page" }, h("p", { class: "muted" }, "Loading…"));
  fill(view, root);
  try {
    const handle = await page(root, args, params, ctx);
    if (ctx.alive()) current = handle || null;
  } catch (error) {
    if (ctx.alive()) fill(root, h("h1", {}, "Something went wrong"), failure(error));
  }
}

function failure(error) {
  const text = error && error.status === 404 ? `Not found: ${error.message}` : String(error.message || error);
  return h("p", { class: "notice error" }, text);
}

async function tick() {
  if (current && current.poll && live.checked && !document.hidden && !polling) {
    const gen = generation;
    polling = true;
    try {
      await current.poll();
      if (gen === generation) banner.hidden = true;
    } catch (error) {
      if (gen === generation && error.status !== 401) {
        fill(banner, `Live update failed: ${error.message || error}`);
        banner.hidden = false;
      }
    } finally {
      polling = false;
    }
  }
  setTimeout(tick, POLL_MS);
}

document.addEventListener("stepline:signed-out", () => {
  fill(banner, "Your session has ended. ", h("a", { href: "./" }, "Sign in again"), ".");
  banner.hidden = false;
  live.checked = false;
});

window.addEventListener("hashchange", navigate);
listKeys(view);
navigate();
setTimeout(tick, POLL_MS);
