// The API reference: REST v1 as the engine describes it (GET v1/openapi.json), rendered
// here with no library. One section per tag; each operation shows its method and path,
// who may call it, its parameters, its body and its answers, with the JSON Schema of
// each (references to shared shapes link to the "Shapes" section at the end).
import { code, fill, h, json, api } from "./dom.js";

const SCHEMES = {
  signingKey: "signing key (Bearer)",
  dashboardSession: "dashboard session",
  eventKey: "event key (in the path)",
  signalHookToken: "signal token (in the path)",
};

export async function page(view, _args, params) {
  const doc = await api("v1/openapi.json");
  const byTag = new Map();
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const tag = (op.tags || ["other"])[0];
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push([method.toUpperCase(), path, op]);
    }
  }
  const tags = [...byTag.keys()].sort();
  fill(view,
    h("h1", {}, "API reference"),
    h("p", { class: "muted" },
      `REST v1 of this engine (${doc.info.version}): every route, from `,
      h("a", { href: "v1/openapi.json", id: "openapi-link" }, "v1/openapi.json"),
      " (OpenAPI 3.1). Refusals answer the Error shape."),
    h("nav", { class: "reference-tags" }, ...tags.map((tag) => h("a", { href: `#/reference?tag=${tag}`, "data-tag": tag }, tag, " "))),
    ...tags.map((tag) => section(tag, byTag.get(tag))),
    shapes(doc.components.schemas),
  );
  const shape = params.get("shape");
  const target = shape ? document.getElementById(`shape-${shape}`) : document.getElementById(`tag-${params.get("tag")}`);
  if (target) {
    if (shape) target.open = true;
    target.scrollIntoView();
  }
}

function section(tag, operations) {
  return h("section", { class: "reference-tag", id: `tag-${tag}` },
    h("h2", {}, tag),
    ...operations.map(([method, path, op]) => operation(method, path, op)));
}

function operation(method, path, op) {
  const who = (op.security || []).map((req) => Object.keys(req)[0]).map((name) => (name ? SCHEMES[name] || name : "anyone"));
  const params = (op.parameters || []).map((p) => [code(p.name), p.in, p.required ? "required" : "optional", schemaText(p.schema), p.description || ""]);
  const body = op.requestBody ? op.requestBody.content["application/json"].schema : null;
  const answers = Object.entries(op.responses).map(([status, answer]) => {
    const content = answer.content && (answer.content["application/json"] || answer.content["text/event-stream"]);
    return [code(status), answer.description || "", content ? schemaText(content.schema) : ""];
  });
  return h("details", { class: "reference-op", "data-op": op.operationId },
    h("summary", {}, h("span", { class: `method method-${method.toLowerCase()}` }, method), " ", code(path), " ", op.summary || "",
      op.deprecated ? h("span", { class: "badge" }, " deprecated") : ""),
    op.description ? h("p", {}, op.description) : "",
    h("p", { class: "muted small" }, "Credentials: ", who.length ? who.join(", or ") : "none"),
    params.length ? grid(["Parameter", "In", "", "Schema", ""], params) : "",
    body ? h("div", {}, h("h4", {}, `Body${op.requestBody.required ? "" : " (optional)"}`), json(body)) : "",
    h("h4", {}, "Answers"),
    grid(["Status", "", "Schema"], answers));
}

function grid(headings, rows) {
  return h("table", { class: "reference-grid" },
    h("thead", {}, h("tr", {}, ...headings.map((text) => h("th", {}, text)))),
    h("tbody", {}, ...rows.map((row) => h("tr", {}, ...row.map((cell) => h("td", {}, cell))))));
}

function schemaText(schema) {
  if (!schema) return "";
  if (schema.$ref) return refLink(schema.$ref);
  return h("code", { class: "schema" }, JSON.stringify(schema));
}

function refLink(ref) {
  const name = ref.split("/").pop();
  return h("a", { href: `#/reference?shape=${name}` }, name);
}

function shapes(schemas) {
  return h("section", { class: "reference-tag", id: "shapes" },
    h("h2", {}, "Shapes"),
    ...Object.entries(schemas).map(([name, schema]) =>
      h("details", { class: "reference-shape", id: `shape-${name}` }, h("summary", {}, code(name)), json(schema))));
}
