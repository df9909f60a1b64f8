// Run control from the dashboard: the runs list's selection (cancel or replay the selected
// runs, one request each) and "Cancel all matching the filter" (a bulk action, its progress
// followed until it ends); "Replay from here" on a step of an ended run; a replay's origin
// ("replayed from step charge of run <id>", each linked).
import { api, enc, h, notice, runLink } from "./dom.js";

const FOLLOW_MS = 500;

/** A run's selection checkbox, kept in `selected` across the list's live refreshes. */
export function pick(run, selected, changed) {
  const toggle = (e) => {
    if (e.target.checked) selected.add(run.run_id);
    else selected.delete(run.run_id);
    changed();
  };
  return h("input", {
    type: "checkbox", class: "pick", value: run.run_id, checked: selected.has(run.run_id),
    "aria-label": `Select run ${run.run_id}`, onchange: toggle,
  });
}

/**
 * The bar above the runs list. `filter()` is the bulk filter of the page's filters (null
 * when they cannot be one); `reload()` refreshes the list. Returns { el, changed }.
 */
export function bar(selected, filter, reload) {
  const status = h("div", { id: "bulk-status" });
  const count = h("span", { id: "bulk-count", class: "muted" });
  const cancelSelected = h("button", { type: "button", id: "cancel-selected", class: "danger", onclick: () => each("cancel") }, "Cancel selected");
  const replaySelected = h("button", { type: "button", id: "replay-selected", onclick: () => each("replay") }, "Replay selected");
  const all = h("button", { type: "button", id: "cancel-matching", class: "danger" }, "Cancel all matching the filter…");
  const confirm = h(
    "span",
    { id: "confirm-matching", hidden: true },
    "Cancel every run these filters match, on every page? ",
    h("button", { type: "button", id: "confirm-cancel-matching", class: "danger", onclick: () => matching() }, "Yes, cancel them"),
    h("button", { type: "button", onclick: () => ((confirm.hidden = true), (all.hidden = false)) }, "No"),
  );
  all.addEventListener("click", () => ((all.hidden = true), (confirm.hidden = false)));

  function changed() {
    count.textContent = selected.size ? `${selected.size} selected` : "";
    cancelSelected.disabled = replaySelected.disabled = !selected.size;
  }

  async function each(what) {
    const ids = [...selected];
    const refused = [];
    for (const [i, id] of ids.entries()) {
      notice(status, "ok", `${what === "cancel" ? "Cancelling" : "Replaying"} ${i + 1} of ${ids.length}…`);
      try {
        await api(`v1/runs/${enc(id)}/${what}`, { method: "POST", body: {} });
      } catch (error) {
        refused.push([id, error.message]);
      }
    }
    for (const id of ids) selected.delete(id); // a run ticked meanwhile stays ticked
    changed();
    const done = `${what === "cancel" ? "Cancelled" : "Replayed"} ${ids.length - refused.length} of ${ids.length}.`;
    notice(status, refused.length ? "error" : "ok", done, refused.map(([id, why]) => [" ", runLink(id), `: ${why}`]));
    await reload();
  }

  async function matching() {
    confirm.hidden = true;
    all.hidden = false;
    const where = filter();
    if (!where) {
      notice(status, "error", "Event id and version filters cannot select a bulk action: clear them first.");
      return;
    }
    try {
      const action = (await api("v1/bulk/cancel", { method: "POST", body: { filter: where } })).data;
      await follow(action, status);
    } catch (error) {
      notice(status, "error", error.message);
    }
    await reload();
  }

  changed();
  return { el: h("div", { class: "bulk-bar actions", id: "bulk-bar" }, count, cancelSelected, replaySelected, all, confirm, status), changed };
}

/** Show a bulk action's progress until it ends (GET v1/bulk/{id}). */
async function follow(action, status) {
  const verb = action.action === "cancel" ? "cancelled" : "replayed";
  for (;;) {
    const line = h(
      "span",
      { id: "bulk-progress", "data-status": action.status },
      `Bulk ${action.action} ${action.bulk_id}: ${action.status} — matched ${action.matched} · ${verb} ${action.applied} · skipped ${action.skipped}`,
    );
    notice(status, action.status === "failed" ? "error" : "ok", line);
    if (action.done) return;
    await new Promise((resolve) => setTimeout(resolve, FOLLOW_MS));
    action = (await api(`v1/bulk/${enc(action.bulk_id)}`)).data;
  }
}

/** "Replay from here": a new run reusing the steps recorded before `step`. */
export function replayFrom(run, step, message) {
  async function replay() {
    try {
      const made = await api(`v1/runs/${enc(run.run_id)}/replay`, { method: "POST", body: { from_step: step.id } });
      location.hash = `#/runs/${enc(made.data.run_id)}`;
    } catch (error) {
      notice(message, "error", error.message);
    }
  }
  return h("button", { type: "button", class: "replay-from", "data-step": step.id, onclick: replay }, "Replay from here");
}

/** Where a run came from, when it is a rerun or a replay (null otherwise). */
export function origin(run) {
  const text = run.origin || "";
  if (text.startsWith("rerun:")) return ["rerun of ", runLink(text.slice(6))];
  if (!run.replay_of) return null;
  if (!run.replay_from_step) return h("span", { class: "replay-of" }, "replay of ", runLink(run.replay_of));
  // the step by its name ("charge"), its hashed id on hover (the id alone when no name
  // was recorded), linked to that step open in the original run's page
  const name = run.replay_from_step_name || run.replay_from_step;
  const step = h("a", { href: `#/runs/${enc(run.replay_of)}?step=${enc(run.replay_from_step)}`, class: "replay-step" },
    h("code", { title: run.replay_from_step }, name));
  return h("span", { class: "replay-of" }, "replayed from step ", step, " of run ", runLink(run.replay_of));
}
