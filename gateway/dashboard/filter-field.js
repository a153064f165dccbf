// The endpoint dialog's payload filter (issue 21): a CEL expression, with a
// dry run beside it (TestWebhookFilter, POST /webhooks/filters:test) over
// the organisation's recent events of the types picked in the dialog.
//
// Same rule as every field of the dialog: left as the server holds it,
// nothing is sent (the API keeps an absent filter); cleared, "" removes it.
// A violation on `filter` (from the dry run or from saving) is shown beside
// the field (#filter-error).

import { api } from "./api.js";
import { h } from "./dom.js";

const EXAMPLE = "event.data.points > 100";
const SHOWN_MATCHES = 5;

export function filterField(config, ctx) {
  const held = config ? config.filter || "" : "";
  const input = h("textarea", {
    id: "filter",
    name: "filter",
    rows: "2",
    spellcheck: "false",
    autocomplete: "off",
    class: "mono",
    maxlength: "1024",
    placeholder: EXAMPLE,
    "aria-describedby": "filter-help filter-error filter-result",
  });
  input.value = held;
  const error = h("p", { class: "field-error", id: "filter-error", role: "alert", hidden: true });
  const result = h("p", { class: "help filter-result", id: "filter-result", "aria-live": "polite" });
  const tryIt = h("button", { class: "btn small", type: "button", id: "try-filter" }, "Try on recent events");
  const help = h(
    "p",
    { class: "help", id: "filter-help" },
    "Optional. A CEL expression over event.type, event.id, event.occurred_at and event.data (the fields of the event's payload), e.g. ",
    h("code", {}, EXAMPLE),
    ". Leave empty to receive every event of the chosen types.",
  );

  async function dryRun() {
    const expression = input.value.trim();
    error.hidden = true;
    input.removeAttribute("aria-invalid");
    if (!expression) {
      result.textContent = "No filter: every event of the chosen types is sent.";
      return;
    }
    const types = ctx.patterns ? ctx.patterns() : [];
    if (!types.length) {
      result.textContent = "Choose the events to send first.";
      return;
    }
    tryIt.disabled = true;
    result.textContent = "Trying…";
    try {
      const run = await api("POST", "/webhooks/filters:test", { filter: expression, event_types: types, limit: 200 });
      const examined = run.examined || 0;
      const matched = run.matched || 0;
      if (!examined) {
        result.textContent = "The filter is valid. There are no recent events of these types to try it on.";
        return;
      }
      const errors = run.errors ? ` (${run.errors} could not be evaluated and would not be sent)` : "";
      const ids = (run.matches || []).slice(0, SHOWN_MATCHES).map((m) => `${m.event_type} ${m.event_id}`);
      result.textContent =
        `Would have received ${matched} of the last ${examined} events${errors}.` + (ids.length ? ` Latest: ${ids.join(", ")}${matched > ids.length ? ", …" : ""}` : "");
    } catch (err) {
      result.textContent = "";
      const violation = (err.violations || []).find((v) => v.field === "filter") || (err.violations || [])[0];
      error.textContent = violation ? violation.description : err.message;
      error.hidden = false;
      input.setAttribute("aria-invalid", "true");
    } finally {
      tryIt.disabled = false;
    }
  }
  tryIt.addEventListener("click", dryRun);

  const node = h(
    "div",
    { class: "field", dataset: { field: "filter" } },
    h("label", { for: "filter" }, "Payload filter"),
    input,
    help,
    h("div", { class: "filter-try" }, tryIt, result),
    error,
  );
  const body = () => {
    const typed = input.value;
    if (typed === held) return {};
    return { filter: typed.trim() };
  };
  return { node, body };
}
