// DOM, formatting and REST helpers shared by the pages. No framework, no build step.
// Every URL is relative (no leading slash): the dashboard may be mounted under a prefix.

/** An element; attributes `on<event>` add listeners, children may be nested arrays. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  add(el, children);
  return el;
}

function add(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  add(el, children);
  return el;
}

export const enc = encodeURIComponent;

/** A query string from an object, leaving out empty values. */
export function qs(params) {
  const out = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") out.set(key, String(value));
  }
  return out.toString();
}

// -- REST --------------------------------------------------------------------------------

export class ApiError extends Error {
  constructor(status, message, body = null) {
    super(message);
    this.status = status;
    this.body = body; // the error object, e.g. a bad query's `details`
  }
}

/** Call the REST API at a relative path; JSON in and out; throws ApiError. */
export async function api(path, { method = "GET", body } = {}) {
  const headers = { accept: "application/json", "x-stepline-csrf": "1" };
  const init = { method, headers, credentials: "same-origin", cache: "no-store" };
  if (body !== undefined) {
    headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (response.status === 401) document.dispatchEvent(new CustomEvent("stepline:signed-out"));
  if (!response.ok) {
    throw new ApiError(response.status, (data && data.error) || `HTTP ${response.status}`, data);
  }
  return data;
}

// -- formatting --------------------------------------------------------------------------

const pad = (n, width = 2) => String(n).padStart(width, "0");

/** "2026-01-02 03:04:05" in local time. */
function localText(d) {
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

/** A `<time>` in local time, with the exact UTC timestamp as its title. */
export function time(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  return h("time", { datetime: iso, title: iso }, localText(new Date(iso)));
}

/** "just now", "42 s ago", "3 min ago", "5 h ago", "2 d ago", "in 4 min"; a date past 30 days. */
export function relative(iso, now = Date.now()) {
  const d = new Date(iso);
  const seconds = (now - d.getTime()) / 1000;
  const s = Math.abs(seconds);
  if (s < 5) return "just now";
  let text;
  if (s < 60) text = `${Math.floor(s)} s`;
  else if (s < 3600) text = `${Math.floor(s / 60)} min`;
  else if (s < 86400) text = `${Math.floor(s / 3600)} h`;
  else if (s < 30 * 86400) text = `${Math.floor(s / 86400)} d`;
  else return localText(d);
  return seconds >= 0 ? `${text} ago` : `in ${text}`;
}

/** A `<time class="ago">` ("3 min ago"), the local and UTC times in its tooltip; see `refreshTimes`. */
export function ago(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  const title = `${localText(new Date(iso))} (${iso})`;
  return h("time", { datetime: iso, title, class: "ago" }, relative(iso));
}

/** Bring every relative time under `root` up to date (pages call it on each live refresh). */
export function refreshTimes(root) {
  for (const el of root.querySelectorAll("time.ago")) el.textContent = relative(el.getAttribute("datetime"));
}

export function ms(iso) {
  return iso ? new Date(iso).getTime() : null;
}

/** "850 ms", "3.2 s", "4m 05s", "2h 03m", "3d 4h". */
export function duration(millis) {
  if (millis === null || millis === undefined || Number.isNaN(millis)) return "—";
  if (millis < 1000) return `${Math.max(0, Math.round(millis))} ms`;
  const s = millis / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${pad(Math.floor(s % 60))}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${pad(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

/** How long a run took, or has been going for. */
export function runDuration(run) {
  const start = ms(run.run_started_at) ?? ms(run.created_at);
  const end = ms(run.ended_at) ?? Date.now();
  return duration(end - start);
}

export function json(value) {
  const text = value === undefined ? "undefined" : JSON.stringify(value, null, 2);
  return h("pre", { class: "json" }, text);
}

export function badge(status) {
  const text = status || "unknown";
  return h("span", { class: `badge s-${text.toLowerCase()}` }, text);
}

export function code(text) {
  return h("code", {}, text);
}

export const TERMINAL = new Set(["Completed", "Failed", "Cancelled"]);

export function runLink(runId) {
  return h("a", { href: `#/runs/${enc(runId)}`, class: "mono" }, runId);
}

export function functionLink(functionId) {
  return h("a", { href: `#/functions/${enc(functionId)}` }, functionId);
}

export function eventLink(eventId, text) {
  return h("a", { href: `#/events/${enc(eventId)}`, class: "mono" }, text || eventId);
}

/**
 * A table; `rows` are arrays of cells, `empty` is shown when there are none. Each cell
 * carries its column's heading (`data-label`): narrow screens show rows as labelled cards.
 */
export function table(headings, rows, empty, attrs = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h(
    "table",
    attrs,
    h("thead", {}, h("tr", {}, headings.map((x) => h("th", {}, x)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c, i) => h("td", { "data-label": headings[i] }, c))))),
  );
}

/** A `<dl>` of label → value pairs, skipping empty values. */
export function facts(pairs) {
  const items = pairs.filter(([, value]) => value !== null && value !== undefined && value !== "");
  return h("dl", { class: "facts" }, items.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

/** Parse a JSON textarea; throws an Error with a readable message. */
export function parseJson(text, what) {
  if (!text.trim()) return {};
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`${what} is not valid JSON: ${error.message}`);
  }
}

/** A message line that pages reuse for action results. */
export function notice(el, kind, ...content) {
  fill(el, h("div", { class: `notice ${kind}`, role: "status" }, content));
}
