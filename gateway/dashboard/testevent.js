// Send test event: any type the endpoint subscribes to (or the test ping),
// its data prefilled with the catalog example and editable; the server
// checks it against the type's schema, its violations are shown beside the
// editor, and the attempt it made is shown.

import { api, fieldLabel, loadCatalog, OUTCOMES } from "./api.js";
import { dialog, field, h, icon, outcomePill } from "./dom.js";
import { openAttempt } from "./attempt.js";
import { covers, subscribable, TEST_EVENT_TYPE } from "./picker.js";

function subscribed(patterns, name) {
  return patterns.some((p) => p === name || covers(p, name));
}

// The types a test event of this endpoint may have: those it subscribes to
// (operational ones too, when it names them or webhook.*).
export function testableTypes(config, catalog) {
  return subscribable(catalog)
    .flatMap(([, types]) => types)
    .filter((t) => subscribed(config.event_types || [], t.name));
}

// "Test event delivered: HTTP 200 in 4 ms."
export function testSummary(log) {
  const o = OUTCOMES[log.outcome] || { label: "Unknown" };
  const what = log.response_status_code ? `HTTP ${log.response_status_code}` : log.error || "no response";
  return `Test event ${o.label.toLowerCase()}: ${what} in ${log.duration_ms} ms.`;
}

export async function openTestEvent(config, onSent) {
  let catalog = [];
  try {
    catalog = await loadCatalog();
  } catch {
    return;
  }
  const types = testableTypes(config, catalog);
  const select = h(
    "select",
    {},
    types.map((t) => h("option", { value: t.name }, t.name)),
    h("option", { value: "" }, `${TEST_EVENT_TYPE} (a ping, no data of yours)`),
  );
  const editor = h("textarea", { class: "code-editor mono", rows: "12", spellcheck: "false", autocomplete: "off" });
  const violations = h("ul", { class: "violations", id: "test-data-violations", "aria-live": "polite" });
  const result = h("div", { class: "test-result", role: "status" });
  const formError = h("p", { class: "inline-error", role: "alert", hidden: true });
  const submit = h("button", { class: "btn primary", type: "submit" }, icon("play"), h("span", {}, "Send test event"));
  const exampleOf = (name) => (catalog.find((t) => t.name === name) || {}).example || {};
  const fill = () => {
    editor.value = select.value ? JSON.stringify(exampleOf(select.value), null, 2) : "";
    editor.disabled = !select.value;
    violations.replaceChildren();
    editor.removeAttribute("aria-invalid");
  };
  select.addEventListener("change", fill);
  const form = h(
    "form",
    { class: "modal-body", novalidate: true },
    h("p", { class: "muted" }, `Delivered to ${config.url} only, signed like every delivery, and attempted now (never retried).`),
    field("test-type", "Event type", select, types.length ? "The types this endpoint subscribes to." : "This endpoint subscribes to no published type: a ping is sent."),
    h(
      "div",
      { class: "field", dataset: { field: "data" } },
      h("label", { for: "test-data" }, "Data"),
      editor,
      h("p", { class: "help", id: "test-data-help" }, "The event's data as JSON, prefilled with the catalog's example. The service checks it against the type's schema."),
      violations,
    ),
    h("div", { class: "form-actions" }, formError, submit),
    result,
  );
  editor.id = "test-data";
  editor.setAttribute("aria-describedby", "test-data-help test-data-violations");
  fill();
  const el = dialog("Send a test event", form, { wide: true });
  select.focus();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    formError.hidden = true;
    violations.replaceChildren();
    editor.removeAttribute("aria-invalid");
    const body = {};
    if (select.value) {
      let data;
      try {
        data = JSON.parse(editor.value || "{}");
      } catch (err) {
        editor.setAttribute("aria-invalid", "true");
        violations.replaceChildren(h("li", {}, `Not valid JSON: ${err.message}`));
        editor.focus();
        return;
      }
      body.event_type = select.value;
      body.data = data;
    }
    submit.disabled = true;
    result.replaceChildren(h("p", { class: "muted" }, "Sending…"));
    try {
      const { log } = await api("POST", `/webhooks/configs/${config.id}:test`, body);
      const o = OUTCOMES[log.outcome] || { label: "Unknown", tone: "muted" };
      const open = h("button", { class: "btn small", type: "button" }, "Open the attempt");
      open.addEventListener("click", () => {
        el.close();
        openAttempt(log);
      });
      result.replaceChildren(
        h("div", { class: `test-outcome ${o.tone}` }, outcomePill(log.outcome), h("span", {}, testSummary(log)), open),
      );
      if (onSent) onSent(log);
    } catch (err) {
      result.replaceChildren();
      const own = err.violations.filter((v) => v.field === "data" || v.field.startsWith("data.") || v.field.startsWith("data["));
      if (own.length) {
        editor.setAttribute("aria-invalid", "true");
        violations.replaceChildren(...own.map((v) => h("li", {}, h("code", {}, v.field.replace(/^data\.?/, "") || "data"), `: ${v.description}`)));
      }
      const rest = err.violations.filter((v) => !own.includes(v));
      if (!own.length || rest.length) {
        formError.textContent = rest.length ? rest.map((v) => `${fieldLabel(v.field)}: ${v.description}`).join(" ") : err.message;
        formError.hidden = false;
      }
    } finally {
      submit.disabled = false;
    }
  });
}
