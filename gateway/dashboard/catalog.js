// The event catalog browser (GET /webhooks/event-types): every type with its
// category, description, the JSON Schema of its `data` as a readable list of
// fields, and an example. `#/catalog?type=reward.claimed` opens one type.

import { loadCatalog } from "./api.js";
import { h, renderFailure } from "./dom.js";
import { OPERATIONAL_CATEGORY, TEST_EVENT_TYPE } from "./picker.js";

function typeOf(schema) {
  if (!schema || typeof schema !== "object") return "any";
  if (schema.type === "array") return `array of ${typeOf(schema.items)}`;
  let text = schema.type || "any";
  if (schema.format) text += ` (${schema.format})`;
  return text;
}

function constraints(schema) {
  const out = [];
  if (schema.enum) out.push(`one of ${schema.enum.join(", ")}`);
  if (schema.minimum !== undefined && schema.maximum !== undefined) out.push(`${schema.minimum} to ${schema.maximum}`);
  else if (schema.minimum !== undefined) out.push(`at least ${schema.minimum}`);
  else if (schema.maximum !== undefined) out.push(`at most ${schema.maximum}`);
  if (schema.minLength) out.push(schema.minLength === 1 ? "not empty" : `at least ${schema.minLength} characters`);
  if (schema.maxLength) out.push(`at most ${schema.maxLength} characters`);
  if (schema.pattern) out.push(`matches ${schema.pattern}`);
  return out;
}

// A schema's properties as a nested list: name, type, required, description, constraints.
export function schemaFields(schema) {
  const props = (schema && schema.properties) || {};
  const required = new Set((schema && schema.required) || []);
  const names = Object.keys(props);
  if (!names.length) return h("p", { class: "muted" }, "No fields.");
  return h(
    "ul",
    { class: "schema" },
    names.map((name) => {
      const prop = props[name];
      const nested = prop.type === "object" ? prop : prop.type === "array" && prop.items && prop.items.type === "object" ? prop.items : null;
      const [summary, ...rest] = String(prop.description || "").split("\n\n");
      return h(
        "li",
        { class: "schema-field" },
        h(
          "div",
          { class: "schema-head" },
          h("code", { class: "schema-name" }, name),
          h("span", { class: "schema-type" }, typeOf(prop)),
          required.has(name) ? h("span", { class: "pill muted" }, "required") : h("span", { class: "muted schema-optional" }, "optional"),
        ),
        summary ? h("p", { class: "schema-desc" }, summary) : null,
        rest.length && !prop.enum ? h("p", { class: "schema-desc muted" }, rest.join(" ")) : null,
        constraints(prop).length ? h("p", { class: "schema-rules muted" }, constraints(prop).join(" · ")) : null,
        nested ? schemaFields(nested) : null,
      );
    }),
  );
}

function who(t) {
  if (t.name === TEST_EVENT_TYPE) return "Test event: sent by “Send test event” to one endpoint; endpoints cannot subscribe to it.";
  if (t.category === OPERATIONAL_CATEGORY) return "Sent by the service about your endpoints; received only by subscribing to it by name or to webhook.* (* does not include it).";
  return null;
}

function typeEntry(t, open) {
  return h(
    "details",
    { class: "card catalog-type", id: `type-${t.name}`, open, dataset: { type: t.name } },
    h("summary", {}, h("code", { class: "catalog-name" }, t.name), h("span", { class: "catalog-summary muted" }, t.description)),
    h(
      "div",
      { class: "catalog-body" },
      h("p", {}, h("span", { class: "pill" }, t.category), " ", t.description),
      who(t) ? h("p", { class: "help" }, who(t)) : null,
      h("h3", {}, "Fields of data"),
      schemaFields(t.schema),
      h("h3", {}, "Example data"),
      h("pre", { class: "code", tabindex: "0", "aria-label": `Example data of ${t.name}` }, JSON.stringify(t.example || {}, null, 2)),
    ),
  );
}

export async function renderCatalog(params) {
  const main = document.getElementById("main");
  const body = h("div", { class: "catalog", "aria-busy": "true" }, h("p", { class: "loading", role: "status" }, "Loading the event types…"));
  main.replaceChildren(
    h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "Event types"), h("p", { class: "muted" }, "What your endpoints can receive: each type's fields and an example of its data."))),
    body,
  );
  let catalog;
  try {
    catalog = await loadCatalog({ strict: true });
  } catch (err) {
    body.removeAttribute("aria-busy");
    body.replaceChildren(renderFailure(err, () => renderCatalog(params)));
    return;
  }
  body.removeAttribute("aria-busy");
  const wanted = params.get("type") || "";
  const search = h("input", { type: "search", id: "catalog-search", spellcheck: "false", placeholder: "reward, claimed, points…", value: params.get("q") || "" });
  const list = h("div", { class: "catalog-list" });
  const count = h("p", { class: "muted", role: "status", id: "catalog-count" });
  const draw = () => {
    const q = search.value.trim().toLowerCase();
    const shown = catalog.filter((t) => !q || `${t.name} ${t.description}`.toLowerCase().includes(q));
    const groups = new Map();
    for (const t of shown) {
      if (!groups.has(t.category)) groups.set(t.category, []);
      groups.get(t.category).push(t);
    }
    list.replaceChildren(
      ...[...groups.entries()].map(([category, types]) =>
        h("section", { class: "catalog-category", "aria-labelledby": `cat-${category}` }, h("h2", { id: `cat-${category}` }, category), types.map((t) => typeEntry(t, t.name === wanted))),
      ),
    );
    count.textContent = shown.length ? `${shown.length} of ${catalog.length} types` : "No event type matches.";
  };
  search.addEventListener("input", draw);
  body.replaceChildren(h("div", { class: "field catalog-search" }, h("label", { for: "catalog-search" }, "Find an event type"), search), count, list);
  draw();
  if (wanted) {
    const el = document.getElementById(`type-${wanted}`);
    if (el) {
      el.scrollIntoView();
      el.querySelector("summary").focus();
    }
  }
}
