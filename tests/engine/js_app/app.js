// An app written with the official `inngest` npm SDK, driven by the stepline engine in
// tests/engine/test_official_js.py.
//
//   node app.js <engine base url> [port]
//
// Serves the SDK at /api/inngest, plus two logs for the tests, both filtered by `?run=`:
// GET /log, every step body that ran (so a test can check each ran exactly once), and
// GET /calls, every execution request the engine made. Prints "listening <port>" once it
// accepts connections (port 0 picks a free one).
"use strict";

const express = require("express");
const { Inngest, NonRetriableError } = require("inngest");
const { serve } = require("inngest/express");

const engineUrl = process.argv[2] || process.env.INNGEST_BASE_URL;
const port = Number(process.argv[3] || process.env.PORT || 0);
if (!engineUrl) {
  console.error("usage: node app.js <engine base url> [port]");
  process.exit(2);
}

// Dev mode, unless INNGEST_SIGNING_KEY is set: then cloud mode, where the SDK checks the
// engine's signatures and sends its key as a bearer token (INNGEST_EVENT_KEY for events).
const inngest = new Inngest({
  id: "js-app",
  isDev: !process.env.INNGEST_SIGNING_KEY,
  baseUrl: engineUrl,
});

// What ran, in order: { run, step, attempt }.
const log = [];
function ran(ctx, step) {
  log.push({ run: ctx.runId, step, attempt: ctx.attempt });
}

// The execution requests received, in order: { run, fnId, stepId, attempt, qi }.
const calls = [];

const twoSteps = inngest.createFunction(
  { id: "two-steps", triggers: [{ event: "js/two" }] },
  async ({ event, step, runId, attempt }) => {
    const ctx = { runId, attempt };
    const a = await step.run("add-one", () => {
      ran(ctx, "add-one");
      return event.data.n + 1;
    });
    const b = await step.run("double", () => {
      ran(ctx, "double");
      return a * 2;
    });
    return { a, b };
  },
);

const sleeper = inngest.createFunction(
  { id: "sleeper", triggers: [{ event: "js/sleep" }] },
  async ({ step, runId, attempt }) => {
    const ctx = { runId, attempt };
    const before = await step.run("before", () => {
      ran(ctx, "before");
      return Date.now();
    });
    await step.sleep("nap", "1s");
    const after = await step.run("after", () => {
      ran(ctx, "after");
      return Date.now();
    });
    return { slept: after - before >= 1000 };
  },
);

const waiter = inngest.createFunction(
  { id: "waiter", triggers: [{ event: "js/wait" }] },
  async ({ step, runId, attempt }) => {
    const ctx = { runId, attempt };
    await step.run("ready", () => {
      ran(ctx, "ready");
      return true;
    });
    const matched = await step.waitForEvent("by-match", {
      event: "js/approved",
      match: "data.ticket",
      timeout: "30s",
    });
    const filtered = await step.waitForEvent("by-if", {
      event: "js/shipped",
      if: "async.data.ticket == event.data.ticket && async.data.ok == true",
      timeout: "30s",
    });
    const missed = await step.waitForEvent("timed-out", {
      event: "js/never",
      timeout: "1s",
    });
    return {
      approvedBy: matched && matched.data.by,
      shipped: filtered && filtered.data.ticket,
      missed,
    };
  },
);

const parallel = inngest.createFunction(
  { id: "parallel", triggers: [{ event: "js/parallel" }] },
  async ({ event, step, runId, attempt }) => {
    const ctx = { runId, attempt };
    const parts = await Promise.all(
      ["a", "b", "c"].map((name, i) =>
        step.run(`part-${name}`, () => {
          ran(ctx, `part-${name}`);
          return event.data.base + i;
        }),
      ),
    );
    const total = await step.run("total", () => {
      ran(ctx, "total");
      return parts.reduce((x, y) => x + y, 0);
    });
    return { parts, total };
  },
);

const child = inngest.createFunction(
  { id: "child", triggers: [{ event: "js/child" }] },
  async ({ event, step, runId, attempt }) => {
    const ctx = { runId, attempt };
    const times = await step.run("times-ten", () => {
      ran(ctx, "times-ten");
      return event.data.x * 10;
    });
    return { times };
  },
);

const invoker = inngest.createFunction(
  { id: "invoker", triggers: [{ event: "js/invoke" }] },
  async ({ event, step }) => {
    const result = await step.invoke("call-child", {
      function: child,
      data: { x: event.data.x },
    });
    return { child: result };
  },
);

const doomed = inngest.createFunction(
  { id: "doomed", retries: 3, triggers: [{ event: "js/doomed" }] },
  async ({ step, runId, attempt }) => {
    const ctx = { runId, attempt };
    await step.run("fine", () => {
      ran(ctx, "fine");
      return "ok";
    });
    ran(ctx, "throw");
    throw new NonRetriableError("this cannot work");
  },
);

const flaky = inngest.createFunction(
  { id: "flaky", retries: 2, triggers: [{ event: "js/flaky" }] },
  async ({ step, runId, attempt }) => {
    const ctx = { runId, attempt };
    const value = await step.run("wobbly", () => {
      ran(ctx, "wobbly");
      if (attempt === 0) {
        throw new Error("first attempt fails");
      }
      return `ok on attempt ${attempt}`;
    });
    return { value };
  },
);

const catcher = inngest.createFunction(
  { id: "catcher", retries: 1, triggers: [{ event: "js/catch" }] },
  async ({ step, runId, attempt }) => {
    const ctx = { runId, attempt };
    let caught = null;
    try {
      await step.run("always-fails", () => {
        ran(ctx, "always-fails");
        throw new TypeError("boom");
      });
    } catch (err) {
      caught = { name: err.name, message: err.message };
    }
    const after = await step.run("after-failure", () => {
      ran(ctx, "after-failure");
      return "recovered";
    });
    return { caught, after };
  },
);

const sender = inngest.createFunction(
  { id: "sender", triggers: [{ event: "js/send" }] },
  async ({ event, step }) => {
    const sent = await step.sendEvent("emit", {
      name: "js/child",
      data: { x: event.data.x },
    });
    return { count: sent.ids.length };
  },
);

const app = express();
app.use(express.json({ limit: "10mb" }));
app.post("/api/inngest", (req, res, next) => {
  const ctx = (req.body && req.body.ctx) || {};
  calls.push({
    run: ctx.run_id,
    fnId: req.query.fnId,
    stepId: req.query.stepId,
    attempt: ctx.attempt,
    qi: ctx.qi_id ?? null,
  });
  next();
});
app.use(
  "/api/inngest",
  serve({
    client: inngest,
    functions: [twoSteps, sleeper, waiter, parallel, child, invoker, doomed, flaky, catcher, sender],
  }),
);

function byRun(entries) {
  return (req, res) => {
    const run = req.query.run;
    res.json(run ? entries.filter((entry) => entry.run === run) : entries);
  };
}
app.get("/log", byRun(log));
app.get("/calls", byRun(calls));

const server = app.listen(port, "127.0.0.1", () => {
  console.log(`listening ${server.address().port}`);
});

function stop() {
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
