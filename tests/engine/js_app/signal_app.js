// An app written with the official `inngest` npm SDK that waits for and sends signals
// (step.waitForSignal / step.sendSignal), driven by the stepline engine in
// tests/engine/test_signals_js.py.
//
//   node signal_app.js <engine base url> [port]
//
// Prints "listening <port>" once it accepts connections (port 0 picks a free one).
"use strict";

const express = require("express");
const { Inngest } = require("inngest");
const { serve } = require("inngest/express");

const engineUrl = process.argv[2];
const port = Number(process.argv[3] || 0);
if (!engineUrl) {
  console.error("usage: node signal_app.js <engine base url> [port]");
  process.exit(2);
}

const inngest = new Inngest({ id: "js-signals", isDev: true, baseUrl: engineUrl });

// Waits for event.data.signal; returns what waitForSignal returned ({signal, data} or null).
const waiter = inngest.createFunction(
  { id: "waiter", retries: 0, triggers: [{ event: "js/wait-signal" }] },
  async ({ event, step }) => {
    const got = await step.waitForSignal("wait", {
      signal: event.data.signal,
      timeout: event.data.timeout || "1h",
      onConflict: event.data.onConflict || "fail",
    });
    return { got };
  },
);

// Sends event.data.signal with event.data.payload from a step (POST /v1/signals).
const sender = inngest.createFunction(
  { id: "sender", retries: 0, triggers: [{ event: "js/send-signal" }] },
  async ({ event, step }) => {
    const sent = await step.sendSignal("send", {
      signal: event.data.signal,
      data: event.data.payload,
    });
    return { sent };
  },
);

const app = express();
app.use(express.json({ limit: "10mb" }));
app.use("/api/inngest", serve({ client: inngest, functions: [waiter, sender] }));
const server = app.listen(port, "127.0.0.1", () => {
  console.log(`listening ${server.address().port}`);
});

function stop() {
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
