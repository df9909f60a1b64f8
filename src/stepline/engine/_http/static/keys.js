// Keyboard navigation over the rows of whatever list the page shows (runs, functions,
// events, apps...): ArrowDown / j and ArrowUp / k move a focused row, Enter opens its
// first link, "/" goes to the page's search or filter box and Escape leaves a box. The
// rows are every body row of a table in the view that holds a link, so each list page
// takes part without wiring of its own. The box is the first one marked `data-search`,
// of type search, in a `role="search"` form or in a filter form (`form.filters`). Live
// updates redraw the tables: the focused row is found again by its link (or its place)
// after each redraw, and when the person comes back to the list (Back after Enter).

// where a key types rather than moves (a checkbox or button lets the keys through)
const TYPING = 'input:not([type="checkbox"], [type="radio"], [type="button"], [type="submit"]), textarea, select, [contenteditable]';
const BOX = 'input:not([type]), input[type="text"], input[type="search"]';

let view = null;
// per page (its hash): { href, index } of the focused row, for after a redraw or a return
const focusedOn = new Map();

/** The rows a person can move between, in page order. */
function rows() {
  return [...view.querySelectorAll("table tbody tr")].filter((row) => row.querySelector("a[href]"));
}

function searchBox() {
  return view.querySelector(`[data-search], input[type="search"], form:is([role="search"], .filters) :is(${BOX})`);
}

function mark(row) {
  for (const old of view.querySelectorAll("tr.key-focus")) {
    if (old !== row) old.classList.remove("key-focus");
  }
  row.classList.add("key-focus");
  row.tabIndex = -1;
  const list = rows();
  focusedOn.set(location.hash, { href: row.querySelector("a[href]").getAttribute("href"), index: list.indexOf(row) });
}

function move(by) {
  const list = rows();
  if (!list.length) return;
  const at = list.findIndex((row) => row.classList.contains("key-focus"));
  const next = list[at < 0 ? (by > 0 ? 0 : list.length - 1) : Math.min(list.length - 1, Math.max(0, at + by))];
  mark(next);
  next.focus({ preventScroll: true });
  next.scrollIntoView({ block: "nearest" });
}

/** After a redraw or a return: focus the row that was focused (same link, else same place). */
function restore() {
  const focused = focusedOn.get(location.hash);
  if (!focused || view.querySelector("tr.key-focus")) return;
  const list = rows();
  const again = list.find((row) => row.querySelector("a[href]").getAttribute("href") === focused.href) || list[Math.min(focused.index, list.length - 1)];
  if (!again) return;
  const hadFocus = document.activeElement === document.body || document.activeElement === null;
  mark(again);
  if (hadFocus) again.focus({ preventScroll: true });
}

function onKey(event) {
  // a key a page's own control took (a completion list closing on Escape) stays its own
  if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
  const target = event.target;
  if (target instanceof Element && target.closest(TYPING)) {
    if (event.key === "Escape") target.closest(TYPING).blur();
    return;
  }
  if (event.key === "/") {
    const box = searchBox();
    if (!box) return;
    event.preventDefault();
    box.focus();
    box.select?.();
  } else if (event.key === "ArrowDown" || event.key === "j") {
    if (!rows().length) return;
    event.preventDefault();
    move(1);
  } else if (event.key === "ArrowUp" || event.key === "k") {
    if (!rows().length) return;
    event.preventDefault();
    move(-1);
  } else if (event.key === "Enter") {
    const row = view.querySelector("tr.key-focus");
    // a link or button with the focus opens itself
    if (!row || (target instanceof Element && target.closest("a, button, summary") && target !== row)) return;
    event.preventDefault();
    row.querySelector("a[href]").click();
  }
}

/** Listen on the document; `root` is the element the pages render into. */
export function listKeys(root) {
  view = root;
  document.addEventListener("keydown", onKey);
  new MutationObserver(restore).observe(root, { childList: true, subtree: true });
}
