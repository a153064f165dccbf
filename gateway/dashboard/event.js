// The message view: one event (GET /webhooks/events/{event_id}) with its
// exact payload and every endpoint's delivery of it, their attempts, and a
// retry per endpoint. `#/event?id=evt_…`; without an id, a lookup by id.

import { api, canWrite, loadConfigs, state } from "./api.js";
import { openAttempt } from "./attempt.js";
import { absolute, field, h, icon, loading, note, pretty, relative, renderFailure, shortUrl } from "./dom.js";
import { logRow } from "./logs.js";

const EVENT_POLL_MS = 4000;

// The API's DeliveryStatus enum, in an admin's words.
export const DELIVERY_STATUSES = {
  DELIVERY_STATUS_PENDING: { label: "Pending", tone: "warn" },
  DELIVERY_STATUS_DELIVERED: { label: "Delivered", tone: "ok" },
  DELIVERY_STATUS_FAILED: { label: "Failed", tone: "bad" },
  DELIVERY_STATUS_DEAD: { label: "Dead", tone: "dead" },
  DELIVERY_STATUS_CANCELLED: { label: "Cancelled", tone: "muted" },
};

function lookupForm(current) {
  const input = h("input", { type: "search", spellcheck: "false", placeholder: "evt_…", value: current || "", required: true });
  const form = h(
    "form",
    {
      class: "event-lookup",
      role: "search",
      "aria-label": "Find an event",
      onsubmit: (e) => {
        e.preventDefault();
        if (input.value.trim()) location.hash = `#/event?id=${encodeURIComponent(input.value.trim())}`;
      },
    },
    field("lookup-event", "Event id", input, "The id of a published event (in the delivery log, or returned by PublishEvent)."),
    h("button", { class: "btn", type: "submit" }, "Show the event"),
  );
  return form;
}

// One endpoint's delivery of the event: where, how it stands, its attempts, a retry.
function deliveryCard(eventId, item, reload) {
  const d = item.delivery || {};
  const status = DELIVERY_STATUSES[d.status] || { label: "Unknown", tone: "muted" };
  const slot = h("p", { class: "inline-note", role: "status", hidden: true });
  const retry = h("button", { class: "btn small", type: "button" }, icon("refresh"), h("span", {}, "Retry to this endpoint"));
  retry.addEventListener("click", async () => {
    retry.disabled = true;
    try {
      const resp = await api("POST", `/webhooks/deliveries/${d.id}:retry`, {});
      note(slot, resp.scheduled ? "Retry scheduled: the attempt appears here in a moment." : "Already due or being attempted; nothing changed.", resp.scheduled ? "ok" : "muted");
      setTimeout(reload, 1000);
    } catch (err) {
      note(slot, err.message, "bad");
    } finally {
      retry.disabled = false;
    }
  });
  const url = item.url || (state.configs.find((c) => c.id === d.config_id) || {}).url || d.config_id;
  const attempts = item.attempts || [];
  const openFull = async (log) => {
    // The view's attempts carry no bodies or headers: the log has them.
    try {
      const page = await api("GET", `/webhooks/logs?event_id=${encodeURIComponent(eventId)}&config_id=${encodeURIComponent(d.config_id)}&page_size=100`);
      openAttempt((page.logs || []).find((l) => l.id === log.id) || log);
    } catch {
      openAttempt(log);
    }
  };
  return h(
    "article",
    { class: "card event-delivery", dataset: { deliveryId: d.id || "", configId: d.config_id || "" } },
    h(
      "div",
      { class: "endpoint-head" },
      h("h3", { class: "url" }, url, item.endpoint_deleted ? h("span", { class: "muted" }, " (deleted)") : null),
      h("span", { class: `pill ${status.tone}` }, status.label),
    ),
    h(
      "p",
      { class: "muted" },
      `${d.attempts || 0} ${Number(d.attempts) === 1 ? "attempt" : "attempts"}`,
      d.next_attempt_at ? ` · next ${relative(d.next_attempt_at)} (${absolute(d.next_attempt_at)})` : "",
      attempts.length < Number(d.attempts || 0) ? ` · the newest ${attempts.length} shown` : "",
    ),
    attempts.length
      ? h(
          "ol",
          { class: "log-list", "aria-label": `Attempts to ${shortUrl(url)}` },
          attempts.map((log) => {
            const row = logRow({ ...log, url: log.url || url, endpoint_deleted: item.endpoint_deleted });
            row.querySelector("button").onclick = () => openFull(log);
            return row;
          }),
        )
      : h("p", { class: "muted" }, "No attempt yet."),
    canWrite() && !item.endpoint_deleted && d.status !== "DELIVERY_STATUS_CANCELLED" ? h("div", { class: "actions" }, retry) : null,
    slot,
  );
}

export function renderEvent(params) {
  const id = params.get("id") || "";
  const main = document.getElementById("main");
  const body = h("div", { class: "event-view" });
  main.replaceChildren(
    h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "Event"), h("p", { class: "muted" }, "One event, its exact payload, and how each endpoint received it."))),
    lookupForm(id),
    body,
  );
  if (!id) return;
  body.replaceChildren(loading("Loading the event…"));
  let drawn = "";
  const notes = () => [...body.querySelectorAll(".inline-note")].filter((n) => !n.hidden).map((n) => [n.closest("[data-delivery-id]")?.dataset.deliveryId, n.textContent, n.className]);
  const load = async () => {
    let ev;
    try {
      ev = await api("GET", `/webhooks/events/${encodeURIComponent(id)}`);
    } catch (err) {
      if (err.status === 401) return;
      drawn = "";
      body.replaceChildren(
        err.status === 404
          ? h("div", { class: "empty", role: "alert" }, h("h2", {}, "No such event"), h("p", { class: "muted" }, `No event of your organisation has the id ${id}.`))
          : renderFailure(err, load),
      );
      return;
    }
    const text = JSON.stringify(ev);
    if (text === drawn) return; // nothing new: keep focus and notes where they are
    drawn = text;
    const kept = notes();
    const deliveries = ev.deliveries || [];
    body.replaceChildren(
      h(
        "section",
        { class: "card event-summary", "aria-labelledby": "event-id" },
        h("h2", { id: "event-id", class: "mono" }, ev.event_id),
        h(
          "dl",
          { class: "details" },
          h("div", { class: "detail" }, h("dt", {}, "Type"), h("dd", {}, h("a", { href: `#/catalog?type=${encodeURIComponent(ev.event_type)}`, class: "mono" }, ev.event_type))),
          h("div", { class: "detail" }, h("dt", {}, "Happened"), h("dd", {}, absolute(ev.occurred_at))),
          h("div", { class: "detail" }, h("dt", {}, "Received by the service"), h("dd", {}, absolute(ev.created_at))),
          h("div", { class: "detail" }, h("dt", {}, "Delivered to"), h("dd", {}, `${deliveries.length} ${deliveries.length === 1 ? "endpoint" : "endpoints"}`)),
        ),
        h("h3", {}, "Payload, as every endpoint received it"),
        h("pre", { class: "code", tabindex: "0", "aria-label": "Payload" }, pretty(ev.payload)),
      ),
      h("h2", { class: "section-title" }, "Deliveries"),
      ...(deliveries.length ? deliveries.map((item) => deliveryCard(ev.event_id, item, load)) : [h("p", { class: "muted" }, "No endpoint subscribed to this event when it was published.")]),
    );
    for (const [deliveryId, textContent, className] of kept) {
      const slot = body.querySelector(`[data-delivery-id="${CSS.escape(deliveryId || "")}"] .inline-note`);
      if (slot) Object.assign(slot, { textContent, className, hidden: false });
    }
  };
  loadConfigs().catch(() => {});
  load();
  state.timers.push(setInterval(() => document.visibilityState === "visible" && load(), EVENT_POLL_MS));
}
