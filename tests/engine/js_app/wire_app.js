// An app written with the official `inngest` npm SDK for the wire-fidelity tests in
// tests/engine/test_official_js_wire.py.
//
//   node wire_app.js <engine base url> <llm base url>
//
// Environment: KEEP_ALIVE_MS, the server's keep-alive timeout (node's default is 5 s);
// CHUNKED=1, answers without Content-Length (so node sends them chunked);
// INNGEST_SERVE_ORIGIN, the origin the engine is told to call (a proxy's).
// Besides /api/inngest: POST /send/:n (this app's own inngest.send, noting when it
// returned), POST /batch (a batch with an invalid event in the middle), GET /first
// (what the "first" runs saw). Prints "listening <port>" once it accepts connections.
"use strict";

const express = require("express");
const { Inngest, anthropic, openai } = require("inngest");
const { serve } = require("inngest/express");

const [engineUrl, llmUrl] = process.argv.slice(2);
if (!engineUrl || !llmUrl) {
  console.error("usage: node wire_app.js <engine base url> <llm base url>");
  process.exit(2);
}

// every answer of the event API, as the SDK's fetch got it (the SDK keeps only a message)
const answers = [];
async function recordingFetch(url, init) {
  const response = await fetch(url, init);
  if (new URL(url).pathname.startsWith("/e/")) {
    answers.push({ status: response.status, body: await response.clone().json() });
  }
  return response;
}

const inngest = new Inngest({
  id: "js-wire",
  isDev: true,
  baseUrl: engineUrl,
  fetch: recordingFetch,
});

const infer = inngest.createFunction(
  { id: "infer", retries: 0, triggers: [{ event: "wire/infer" }] },
  async ({ step }) => {
    const claude = anthropic({ model: "claude-test", apiKey: "sk-ant", baseUrl: `${llmUrl}/v1` });
    claude.headers = { ...claude.headers, "x-my-header": "mine", "X-SHOUTED": "loud" };
    const body = { max_tokens: 8, messages: [{ role: "user", content: "hi" }] };
    const a = await step.ai.infer("ask-anthropic", { model: claude, body });
    const gpt = openai({ model: "gpt-test", apiKey: "sk-oai", baseUrl: `${llmUrl}/v1` });
    const b = await step.ai.infer("ask-openai", { model: gpt, body: { messages: body.messages } });
    return { a, b };
  },
);

const twoSteps = inngest.createFunction(
  { id: "two-steps", retries: 0, triggers: [{ event: "wire/two" }] },
  async ({ event, step }) => {
    const a = await step.run("a", () => event.data.n + 1);
    if (event.data.nap) {
      await step.sleep("nap", event.data.nap);
    }
    const b = await step.run("b", () => a * 2);
    return { a, b };
  },
);

const batch = inngest.createFunction(
  { id: "batch", retries: 0, triggers: [{ event: "wire/batch" }] },
  async ({ event }) => event.data,
);

// n -> when its send returned (ms, high resolution); n -> what its run's first step saw
const returned = new Map();
const firstSteps = new Map();
const first = inngest.createFunction(
  { id: "first", retries: 0, triggers: [{ event: "wire/first" }] },
  async ({ event, step }) => {
    await step.run("mark", () => {
      const n = event.data.n;
      if (!firstSteps.has(n)) {
        firstSteps.set(n, { at: performance.now(), sendReturned: returned.has(n) });
      }
      return n;
    });
  },
);

const app = express();
if (process.env.CHUNKED) {
  app.use((req, res, next) => {
    // no Content-Length (node adds one to a single res.end(body): write, then end)
    const { setHeader, end } = res;
    res.setHeader = function (name, value) {
      return String(name).toLowerCase() === "content-length"
        ? this
        : setHeader.call(this, name, value);
    };
    res.end = function (chunk, encoding, done) {
      if (chunk == null || typeof chunk === "function") {
        return end.call(this, chunk, encoding, done);
      }
      this.write(chunk, encoding);
      return end.call(this, done);
    };
    next();
  });
}
app.use(express.json({ limit: "10mb" }));
app.use("/api/inngest", serve({ client: inngest, functions: [infer, twoSteps, batch, first] }));

app.post("/send/:n", async (req, res) => {
  const n = Number(req.params.n);
  const { ids } = await inngest.send({ name: "wire/first", data: { n } });
  returned.set(n, performance.now());
  res.json({ ids });
});

app.get("/first", (req, res) => {
  const n = Number(req.query.n);
  const seen = firstSteps.get(n);
  res.json(seen ? { ...seen, returnedAt: returned.get(n) ?? null } : null);
});

app.post("/batch", async (req, res) => {
  answers.length = 0;
  try {
    const sent = await inngest.send([
      { name: "wire/batch", data: { i: 0 } },
      { name: "wire/batch", data: { i: 1 }, ts: 5 }, // before 1980: invalid
      { name: "wire/batch", data: { i: 2 } },
    ]);
    res.json({ sent, answers });
  } catch (err) {
    res.json({ error: { name: err.name, message: err.message, ids: err.ids ?? null }, answers });
  }
});

const server = app.listen(0, "127.0.0.1", () => {
  console.log(`listening ${server.address().port}`);
});
if (process.env.KEEP_ALIVE_MS) {
  server.keepAliveTimeout = Number(process.env.KEEP_ALIVE_MS);
}

function stop() {
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
