// A conversation: the runs carrying the run attribute `conversation` (a durable agent's
// conversation_id), oldest first (GET v1/conversations/{id}/runs), each with its status,
// when it started, the tokens its model requests used (GET v1/runs/{id}/tokens) and a
// link to its page. Live while any of its runs has not ended.
import { TERMINAL, api, badge, code, enc, fill, functionLink, h, runLink, table, time } from "./dom.js";
import { count } from "./tokens.js";

// the most runs the page reads (pages of 100); a longer conversation says so
const MOST = 500;
const PAGE = 100;

export async function page(view, [conversationId], _params, ctx) {
  const note = h("p", { class: "muted small", id: "conversation-note" });
  const body = h("div", { id: "conversation-runs" });
  fill(view, h("h1", {}, "Conversation ", code(conversationId)),
    h("p", { class: "muted" }, "Its runs, oldest first: each continues the message history of the one before."),
    body, note);
  const ended = new Map(); // run id -> tokens of a run that has ended (they no longer change)
  let last = "";
  let live = true;

  async function load() {
    const runs = [];
    let cursor = "";
    do {
      const page = await api(`v1/conversations/${enc(conversationId)}/runs?limit=${PAGE}${cursor ? `&cursor=${enc(cursor)}` : ""}`);
      runs.push(...page.data);
      cursor = page.metadata.next_cursor;
    } while (cursor && runs.length < MOST);
    const used = await Promise.all(runs.map((run) => tokensOf(run)));
    if (!ctx.alive()) return;
    live = runs.some((run) => !TERMINAL.has(run.status));
    const key = JSON.stringify([runs, used]);
    if (key === last) return;
    last = key;
    fill(note, cursor ? `The first ${runs.length} runs.` : "");
    fill(body, table(
      ["#", "Run", "Function", "Status", "Started", "Tokens"],
      runs.map((run, i) => [
        String(i + 1),
        runLink(run.run_id),
        functionLink(run.function_id),
        badge(run.status),
        time(run.run_started_at || run.created_at),
        tokensCell(used[i]),
      ]),
      "No run carries this conversation.",
      { class: "conversation", id: "conversation-table" },
    ));
    for (const [i, row] of [...body.querySelectorAll("tbody tr")].entries()) {
      row.dataset.run = runs[i].run_id;
      row.lastChild.classList.add("tokens");
    }
  }

  async function tokensOf(run) {
    if (ended.has(run.run_id)) return ended.get(run.run_id);
    let found = null;
    try {
      found = (await api(`v1/runs/${enc(run.run_id)}/tokens`)).data;
    } catch (error) {
      if (error.status !== 404) throw error;
    }
    if (TERMINAL.has(run.status)) ended.set(run.run_id, found);
    return found;
  }

  await load();
  return { poll: () => (live ? load() : null) };
}

function tokensCell(t) {
  if (!t || !t.requests) return h("span", { class: "muted" }, "—");
  const title = `${count(t.input_tokens)} input, ${count(t.output_tokens)} output, ${t.requests} model request${t.requests === 1 ? "" : "s"}`;
  return h("span", { title, "data-figure": "total_tokens" }, count(t.total_tokens));
}
