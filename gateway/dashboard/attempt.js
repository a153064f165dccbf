// One delivery attempt in detail: outcome, URL, status, the request headers
// as sent (signatures shortened), the response headers, both bodies, timing,
// the next attempt; Retry, and the way to the event's message view. The
// dialog opens at its top, focus on its heading.

import { api, canWrite, OUTCOMES, state } from "./api.js";
import { absolute, dialog, h, icon, note, outcomePill, pretty, relative } from "./dom.js";

export function detail(label, value, { mono = false } = {}) {
  return h("div", { class: "detail" }, h("dt", {}, label), h("dd", { class: mono ? "mono" : "" }, value || "—"));
}

// Signature values are long and change with every attempt: their start is enough to tell them apart.
export function shortenSignature(name, value) {
  if (name.toLowerCase() !== "webhook-signature") return value;
  return value
    .split(" ")
    .map((sig) => (sig.length > 18 && !sig.endsWith("…") ? `${sig.slice(0, 14)}…` : sig))
    .join(" ");
}

function headerTable(label, headers, emptyText) {
  if (!headers || !headers.length) return h("p", { class: "muted" }, emptyText);
  return h(
    "table",
    { class: "headers", "aria-label": label },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Header"), h("th", { scope: "col" }, "Value"))),
    h(
      "tbody",
      {},
      headers.map((hd) => h("tr", {}, h("th", { scope: "row", class: "mono" }, hd.name), h("td", { class: "mono" }, shortenSignature(hd.name, hd.value || "")))),
    ),
  );
}

export function eventHash(eventId) {
  return `#/event?id=${encodeURIComponent(eventId)}`;
}

export function openAttempt(log) {
  const retryNote = h("p", { class: "inline-note", id: "retry-note", role: "status", hidden: true });
  const retry = h("button", { class: "btn primary", type: "button", id: "retry-delivery" }, icon("refresh"), h("span", {}, "Retry delivery"));
  const o = OUTCOMES[log.outcome] || { label: "Unknown", help: "" };
  const status = log.response_status_code ? String(log.response_status_code) : log.outcome === "OUTCOME_CANCELLED" ? "not sent" : "no response";
  const toEvent = h("a", { class: "btn", href: eventHash(log.event_id), id: "open-event" }, icon("list"), h("span", {}, "All deliveries of this event"));
  const body = h(
    "div",
    { class: "modal-body attempt" },
    h("div", { class: "attempt-summary" }, outcomePill(log.outcome), h("span", { class: "mono" }, log.event_type), h("span", { class: "muted" }, `attempt ${log.attempt}`), h("span", { class: "muted" }, o.help)),
    h(
      "dl",
      { class: "details" },
      detail("URL", `${log.url}${log.endpoint_deleted ? " (endpoint deleted)" : ""}`, { mono: true }),
      detail("Status code", status),
      detail("Duration", `${log.duration_ms} ms`),
      detail("Attempted", absolute(log.attempted_at)),
      detail("Next attempt", log.next_attempt_at ? `${absolute(log.next_attempt_at)} (${relative(log.next_attempt_at)})` : "none scheduled"),
      log.error ? detail("Error", log.error) : null,
      detail("Event", log.event_id, { mono: true }),
      detail("Delivery", log.delivery_id, { mono: true }),
      detail("Attempt id", log.id, { mono: true }),
    ),
    h("h3", {}, "Request headers"),
    headerTable("Request headers", log.request_headers, log.outcome === "OUTCOME_CANCELLED" ? "No request was sent." : "Not recorded for this attempt."),
    h("h3", {}, "Request body"),
    h("pre", { class: "code", tabindex: "0", "aria-label": "Request body" }, pretty(log.request_body)),
    h("h3", {}, "Response headers ", log.response_headers_truncated ? h("span", { class: "pill warn" }, "truncated") : null),
    headerTable("Response headers", log.response_headers, log.response_status_code ? "Not recorded for this attempt." : "No response."),
    h("h3", {}, "Response body ", log.response_body_truncated ? h("span", { class: "pill warn" }, "truncated") : null),
    log.response_body ? h("pre", { class: "code", tabindex: "0", "aria-label": "Response body" }, pretty(log.response_body)) : h("p", { class: "muted" }, "Empty"),
    h("div", { class: "form-actions" }, canWrite() ? retryNote : null, toEvent, canWrite() && !log.endpoint_deleted ? retry : null),
  );
  const el = dialog("Delivery attempt", body, { wide: true, focusTitle: true });
  toEvent.addEventListener("click", () => el.close());
  retry.addEventListener("click", async () => {
    retry.disabled = true;
    try {
      const resp = await api("POST", `/webhooks/deliveries/${log.delivery_id}:retry`, {});
      note(
        retryNote,
        resp.scheduled ? "Retry scheduled: the new attempt appears in the log in a moment." : "This delivery is already due or being attempted; nothing changed.",
        resp.scheduled ? "ok" : "muted",
      );
      if (state.reloadLogs) setTimeout(() => state.reloadLogs(), 800);
    } catch (err) {
      note(retryNote, err.message, "bad");
    } finally {
      retry.disabled = false;
    }
  });
  return el;
}

