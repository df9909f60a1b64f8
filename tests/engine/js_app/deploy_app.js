// The app `js-deploy` on the official `inngest` npm SDK: the runs a deploy check replays
// over the wire, and the code it checks them against (tests/replay/test_deploy_check_js.py).
//
//   node deploy_app.js <engine base url>
//
// Function `order` (event `js-deploy/order`): steps a, b, a sleep `nap` (event.data.nap
// seconds), step c. DEPLOY_VARIANT says which version this process serves: v1, append (a
// step d after c), remove (no a) or reorder (b before a). Past v1, every step body GETs
// DEPLOY_COUNTER_URL, so a step that runs is counted there. Prints "listening <port>".
"use strict";

const express = require("express");
const { Inngest } = require("inngest");
const { serve } = require("inngest/express");

const engineUrl = process.argv[2];
if (!engineUrl) {
  console.error("usage: node deploy_app.js <engine base url>");
  process.exit(2);
}
const variant = process.env.DEPLOY_VARIANT || "v1";
const counterUrl = process.env.DEPLOY_COUNTER_URL || "";

const inngest = new Inngest({ id: "js-deploy", isDev: true, baseUrl: engineUrl });

function body(name) {
  return async () => {
    if (variant !== "v1" && counterUrl) {
      await fetch(`${counterUrl}/step/${name}`);
    }
    return name;
  };
}

const order = inngest.createFunction(
  { id: "order", triggers: [{ event: "js-deploy/order" }] },
  async ({ event, step }) => {
    const done = [];
    if (variant === "remove") {
      done.push(await step.run("b", body("b")));
    } else if (variant === "reorder") {
      done.push(await step.run("b", body("b")));
      done.push(await step.run("a", body("a")));
    } else {
      done.push(await step.run("a", body("a")));
      done.push(await step.run("b", body("b")));
    }
    await step.sleep("nap", `${Number(event.data.nap || 0)}s`);
    done.push(await step.run("c", body("c")));
    if (variant === "append") {
      done.push(await step.run("d", body("d")));
    }
    return done;
  },
);

const app = express();
app.use(express.json({ limit: "10mb" }));
app.use("/api/inngest", serve({ client: inngest, functions: [order] }));

const server = app.listen(0, "127.0.0.1", () => {
  console.log(`listening ${server.address().port}`);
});

function stop() {
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
