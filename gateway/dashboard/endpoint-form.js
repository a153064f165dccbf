// The endpoint dialog (Add an endpoint / Edit endpoint): PutWebhookConfig.
//
// Every field is one entry of ENDPOINT_FIELDS. An entry's `render(config,
// ctx)` draws the field from the configuration the server holds (null when
// adding) and returns `{node, body}`: `body()` is this field's part of the
// request. Rule for every field, so that saving an untouched dialog changes
// nothing: an unchanged field sends exactly the value the server holds, or
// nothing at all (the API keeps an absent optional field). `body()` may throw
// a FormError naming the field, shown beside it like a server violation.
// Adding a field of the API to the dialog is adding one entry here; for a
// plain text or boolean field, `textField`/`checkField` are the whole entry:
//   { name: "ordered", render: (c) => checkField("ordered", "Deliver in order", c, { help: "…" }) },

import { api, state } from "./api.js";
import { dialog, field, h, shortUrl, showError } from "./dom.js";
import { filterField } from "./filter-field.js";
import { eventPicker } from "./picker.js";

export class FormError extends Error {
  constructor(field, message) {
    super(message);
    this.field = field;
  }
}

// Saved as typed, or as held when the admin left it alone (no trimming of a held value).
function keptOrTyped(held, typed) {
  return held !== undefined && typed === held ? held : typed.trim();
}

// A one-line text field of the configuration, by its API name. Untouched, it
// sends the held value (or nothing when the server holds none).
export function textField(name, label, config, { help, placeholder = "", maxlength } = {}) {
  const held = config ? config[name] : undefined;
  const input = h("input", { type: "text", maxlength, placeholder, value: held ?? "" });
  const body = () => {
    if (config && input.value === (held ?? "")) return held === undefined ? {} : { [name]: held };
    return { [name]: input.value.trim() };
  };
  return { node: field(name, label, input, help), body };
}

// A checkbox of the configuration, by its API name; `defaultValue` when adding.
export function checkField(name, label, config, { help, defaultValue = false } = {}) {
  const held = config ? config[name] : undefined;
  const input = h("input", { type: "checkbox", id: name, checked: config ? Boolean(held) : defaultValue, "aria-describedby": help ? `${name}-help ${name}-error` : `${name}-error` });
  const node = h(
    "div",
    { class: "check field", dataset: { field: name } },
    input,
    h("div", {}, h("label", { for: name }, label), help ? h("p", { class: "help", id: `${name}-help` }, help) : null, h("p", { class: "field-error", id: `${name}-error`, role: "alert", hidden: true })),
  );
  const body = () => (config && held === undefined && !input.checked ? {} : { [name]: input.checked });
  return { node, body };
}

const SECRET_LOOKING = /auth|token|key|secret|pass|cookie|session|signature|credential/i;

// Custom headers: the API returns their names only (values are stored
// encrypted, never shown), and a non-empty map replaces the whole set. So:
// untouched, nothing is sent (the stored set is kept); any change sends the
// whole set, and every kept header's value must be typed again.
function headersField(config) {
  const heldNames = config ? config.header_names || [] : [];
  const rows = h("div", { class: "header-rows" });
  const error = h("p", { class: "field-error", id: "headers-error", role: "alert", hidden: true });
  let touched = false;
  const addRow = (name, held) => {
    const nameInput = h("input", { type: "text", spellcheck: "false", autocomplete: "off", value: name, readonly: held, "aria-label": "Header name", placeholder: "x-api-key", class: "mono" });
    const valueInput = h("input", {
      type: SECRET_LOOKING.test(name) ? "password" : "text",
      spellcheck: "false",
      autocomplete: "off",
      "aria-label": `Value of ${name || "the new header"}`,
      placeholder: held ? "Stored, not shown: type to replace" : "value",
      class: "mono",
    });
    nameInput.addEventListener("input", () => {
      touched = true;
      valueInput.type = SECRET_LOOKING.test(nameInput.value) ? "password" : "text";
      valueInput.setAttribute("aria-label", `Value of ${nameInput.value || "the new header"}`);
    });
    valueInput.addEventListener("input", () => (touched = true));
    const remove = h("button", { class: "btn small", type: "button", "aria-label": `Remove header ${name || "(new)"}` }, "Remove");
    const row = h("div", { class: "header-row", dataset: { held: held ? "yes" : "" } }, nameInput, valueInput, remove);
    row.read = () => ({ name: nameInput.value.trim().toLowerCase(), value: valueInput.value, held, valueInput });
    remove.addEventListener("click", () => {
      touched = true;
      row.remove();
      hint.hidden = false;
    });
    rows.append(row);
    return nameInput;
  };
  for (const name of heldNames) addRow(name, true);
  const hint = h(
    "p",
    { class: "help", id: "headers-help" },
    heldNames.length
      ? "Values are stored encrypted and never shown. Leave them alone to keep them; a change replaces the whole set, so type again the value of every header you keep."
      : "Sent with every attempt, e.g. an authorization header for your receiver's gateway.",
  );
  const add = h("button", { class: "btn small", type: "button", id: "add-header" }, "Add a header");
  add.addEventListener("click", () => {
    touched = true;
    addRow("", false).focus();
  });
  const node = h(
    "div",
    { class: "field", dataset: { field: "headers" } },
    h("span", { class: "label", id: "headers-label" }, "Custom headers"),
    h("div", { role: "group", "aria-labelledby": "headers-label", "aria-describedby": "headers-help headers-error" }, rows, add),
    hint,
    error,
  );
  const body = () => {
    if (!touched) return {};
    const entries = [...rows.children].map((r) => r.read()).filter((e) => e.name || e.value);
    if (!entries.length) return heldNames.length ? { clear_headers: true } : {};
    const missing = entries.find((e) => !e.value);
    if (missing) {
      missing.valueInput.setAttribute("aria-invalid", "true");
      throw new FormError("headers", `Type the value of ${missing.name || "the new header"} again: a change to the headers replaces them all, and stored values are never shown.`);
    }
    return { headers: Object.fromEntries(entries.map((e) => [e.name, e.value])) };
  };
  return { node, body };
}

export const ENDPOINT_FIELDS = [
  {
    name: "url",
    render(config) {
      const input = h("input", { type: "url", inputmode: "url", required: true, spellcheck: "false", autocomplete: "off", value: config ? config.url : "", placeholder: "https://example.com/webhooks" });
      return { node: field("url", "Endpoint URL", input, "An http or https URL that accepts signed POST requests."), body: () => ({ url: keptOrTyped(config?.url, input.value) }), focus: input };
    },
  },
  {
    name: "event_types",
    render(config, ctx) {
      const picker = eventPicker(config ? config.event_types || [] : [], ctx.catalog);
      ctx.patterns = () => picker.patterns(); // the filter's dry run tries these types
      const node = h(
        "div",
        { class: "field", dataset: { field: "event_types" } },
        h("span", { class: "label", id: "et-label" }, "Events to send"),
        picker,
        h("p", { class: "field-error", id: "event_types-error", role: "alert", hidden: true }),
      );
      return { node, body: () => ({ event_types: picker.patterns() }), invalid: picker };
    },
  },
  { name: "filter", render: (config, ctx) => filterField(config, ctx) },
  { name: "description", render: (config) => textField("description", "Description", config, { maxlength: 256, placeholder: "What this endpoint is for" }) },
  { name: "enabled", render: (config) => checkField("enabled", "Enabled", config, { defaultValue: true }) },
  // Ordered delivery per ordering key (issue 22).
  { name: "ordered", render: (config) => checkField("ordered", "Ordered per key", config, { help: "Events that share an ordering key (e.g. a user id) arrive one at a time, in publish order; a key that is retrying holds back only its own events." }) },
  { name: "headers", render: (config) => headersField(config) },
];

// The request the dialog sends: every field's part, in the list's order.
export function endpointBody(config, fields) {
  const body = config ? { id: config.id } : {};
  for (const f of fields) Object.assign(body, f.body());
  return body;
}

function placeViolation(form, name, text, fallback) {
  const slot = form.querySelector(`#${CSS.escape(name)}-error`);
  if (!slot) return false;
  slot.textContent = text;
  slot.hidden = false;
  const input = form.querySelector(`#${CSS.escape(name)}`) || fallback;
  if (input) input.setAttribute("aria-invalid", "true");
  return { input };
}

export function openEndpointForm(config, { catalog, onSaved }) {
  const editing = Boolean(config);
  const ctx = { catalog, state }; // shared by the fields (the filter asks the picker's types)
  const fields = ENDPOINT_FIELDS.map((spec) => ({ name: spec.name, ...spec.render(config, ctx) }));
  const formError = h("p", { class: "inline-error", id: "form-error", role: "alert", hidden: true });
  const submit = h("button", { class: "btn primary", type: "submit" }, editing ? "Save changes" : "Create endpoint");
  const cancel = h("button", { class: "btn", type: "button" }, "Cancel");
  const form = h("form", { class: "modal-body", novalidate: true }, fields.map((f) => f.node), h("div", { class: "form-actions" }, formError, cancel, submit));
  const el = dialog(editing ? "Edit endpoint" : "Add an endpoint", form, { wide: true });
  cancel.addEventListener("click", () => el.close());
  const first = fields.find((f) => f.focus);
  if (first) first.focus.focus();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const slot of form.querySelectorAll(".field-error")) slot.hidden = true;
    for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
    showError(formError, null);
    let body;
    try {
      body = endpointBody(config, fields);
    } catch (err) {
      const placed = err instanceof FormError && placeViolation(form, err.field, err.message);
      if (!placed) showError(formError, err);
      return;
    }
    submit.disabled = true;
    try {
      const resp = await api("PUT", "/webhooks/configs", body);
      el.close();
      await onSaved(resp, `Endpoint created: ${shortUrl(resp.config.url)}. This is its signing secret.`);
    } catch (err) {
      let placed = false;
      for (const v of err.violations || []) {
        const name = v.field.split(/[.[]/)[0];
        const spec = fields.find((f) => f.name === name);
        const where = placeViolation(form, name, v.description, spec && spec.invalid);
        if (!where) continue;
        if (!placed && where.input) (where.input.focusTarget ? where.input.focusTarget() : where.input).focus();
        placed = true;
      }
      if (!placed) showError(formError, err);
    } finally {
      submit.disabled = false;
    }
  });
}
