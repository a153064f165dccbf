// The delivery log: filters, live updates, pages, one attempt's detail.

import { api, canWrite, loadCatalog, loadConfigs, OUTCOMES, query, state } from "./api.js";
import { absolute, dialog, field, h, icon, note, pretty, relative, shortUrl, showError, time } from "./dom.js";

const LOG_POLL_MS = 2500;
const PAGE_SIZE = 25;

export function outcomePill(outcome) {
  const o = OUTCOMES[outcome] || { label: outcome || "—", tone: "muted" };
  return h("span", { class: `pill ${o.tone}` }, o.label);
}

export function configLabel(id) {
  const config = state.configs.find((c) => c.id === id);
  return config ? shortUrl(config.url) : id;
}

export function renderLogs(params) {
  state.filters = { ...state.filters, config_id: params.get("config_id") || "" };
  const main = document.getElementById("main");
  const filterError = h("p", { class: "inline-error", id: "filter-error", role: "alert", hidden: true });
  const configSelect = h("select", {}, h("option", { value: "" }, "All endpoints"));
  const eventType = h("input", { type: "text", list: "event-type-options", spellcheck: "false", placeholder: "Any type", value: state.filters.event_type });
  const datalist = h("datalist", { id: "event-type-options" });
  const outcome = h(
    "select",
    {},
    h("option", { value: "" }, "Any outcome"),
    Object.entries(OUTCOMES).map(([value, o]) => h("option", { value, selected: state.filters.outcome === value }, o.label)),
  );
  const eventId = h("input", { type: "search", spellcheck: "false", placeholder: "evt_…", value: state.filters.event_id });
  const liveBox = h("input", { type: "checkbox", id: "live", checked: state.live });
  const updated = h("span", { class: "muted updated", id: "updated", "aria-live": "off" });
  const list = h("ol", { class: "log-list", id: "log-list", "aria-label": "Delivery attempts, newest first" });
  const columns = h(
    "div",
    { class: "log-columns", "aria-hidden": "true" },
    ["Outcome", "Event type", "Endpoint", "Response", "Try", "Duration", "When"].map((c) => h("span", {}, c)),
  );
  const more = h("button", { class: "btn", type: "button", id: "load-more", hidden: true }, "Load older attempts");
  const moreError = h("p", { class: "inline-error", role: "alert", hidden: true });
  const filters = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter the delivery log", onsubmit: (e) => e.preventDefault() },
    field("filter-config", "Endpoint", configSelect),
    field("filter-type", "Event type", eventType),
    field("filter-outcome", "Outcome", outcome),
    field("filter-event", "Event id", eventId),
    datalist,
  );
  main.replaceChildren(
    h(
      "div",
      { class: "page-head" },
      h("div", {}, h("h1", {}, "Delivery log"), h("p", { class: "muted" }, "Every attempt to deliver an event, newest first.")),
      h("div", { class: "live" }, h("div", { class: "check" }, liveBox, h("label", { for: "live" }, "Live updates")), updated),
    ),
    filters,
    filterError,
    h("div", { class: "card log-card" }, columns, list),
    h("div", { class: "more" }, more, moreError),
  );

  const fillConfigs = () => {
    const current = state.filters.config_id;
    configSelect.replaceChildren(
      h("option", { value: "" }, "All endpoints"),
      ...state.configs.map((c) => h("option", { value: c.id, selected: c.id === current }, shortUrl(c.url))),
    );
    if (current && !state.configs.some((c) => c.id === current)) configSelect.append(h("option", { value: current, selected: true }, current));
  };
  loadConfigs().then(fillConfigs, () => {});
  loadCatalog().then(
    (catalog) => datalist.replaceChildren(...[...catalog.map((t) => t.name), "webhook.ping"].map((n) => h("option", { value: n }))),
    () => {},
  );

  const readFilters = () => ({
    config_id: configSelect.value,
    event_type: eventType.value.trim(),
    outcome: outcome.value,
    event_id: eventId.value.trim(),
  });

  const draw = () => {
    if (!state.logs.length) {
      list.replaceChildren(h("li", { class: "empty-row" }, "No attempts match. Publish an event or send a test event to an endpoint."));
    } else {
      list.replaceChildren(...state.logs.map(logRow));
    }
    more.hidden = !state.nextPageToken;
  };

  const fetchPage = (token) =>
    api("GET", `/webhooks/logs${query({ ...state.filters, page_size: PAGE_SIZE, page_token: token })}`);

  const reload = async () => {
    showError(filterError, null);
    for (const slot of filters.querySelectorAll(".field-error")) slot.hidden = true;
    try {
      const page = await fetchPage("");
      state.logs = page.logs || [];
      state.nextPageToken = page.next_page_token;
      state.lastUpdated = Date.now();
      draw();
    } catch (err) {
      state.logs = [];
      draw();
      const fieldMap = { config_id: "filter-config", event_type: "filter-type", outcome: "filter-outcome", event_id: "filter-event" };
      let placed = false;
      for (const v of err.violations) {
        const slot = filters.querySelector(`#${fieldMap[v.field] || "none"}-error`);
        if (slot) {
          slot.textContent = v.description;
          slot.hidden = false;
          placed = true;
        }
      }
      if (!placed) showError(filterError, err);
    }
  };

  // Live updates: the newest page again, new attempts merged in at the top.
  const poll = async () => {
    if (!state.live || document.visibilityState !== "visible") return;
    try {
      const page = await fetchPage("");
      const known = new Set(state.logs.map((l) => l.id));
      const fresh = (page.logs || []).filter((l) => !known.has(l.id));
      if (fresh.length) {
        state.logs = [...fresh, ...state.logs];
        if (state.logs.length <= PAGE_SIZE) state.nextPageToken = page.next_page_token;
        draw();
        for (const id of fresh.map((l) => l.id)) {
          const row = list.querySelector(`[data-log-id="${CSS.escape(id)}"]`);
          if (row) row.classList.add("fresh");
        }
      }
      state.lastUpdated = Date.now();
      state.pollError = null;
    } catch (err) {
      state.pollError = err.message; // shown beside the "Live updates" switch
    }
  };

  const onFilter = () => {
    state.filters = readFilters();
    const params = state.filters.config_id ? `?config_id=${encodeURIComponent(state.filters.config_id)}` : "";
    history.replaceState(null, "", `#/logs${params}`);
    reload();
  };
  configSelect.addEventListener("change", onFilter);
  outcome.addEventListener("change", onFilter);
  eventType.addEventListener("change", onFilter);
  eventId.addEventListener("change", onFilter);
  liveBox.addEventListener("change", () => {
    state.live = liveBox.checked;
    if (state.live) poll();
  });
  more.addEventListener("click", async () => {
    showError(moreError, null);
    try {
      const page = await fetchPage(state.nextPageToken);
      const known = new Set(state.logs.map((l) => l.id));
      state.logs = [...state.logs, ...(page.logs || []).filter((l) => !known.has(l.id))];
      state.nextPageToken = page.next_page_token;
      draw();
    } catch (err) {
      showError(moreError, err);
    }
  });

  reload();
  state.timers.push(setInterval(poll, LOG_POLL_MS));
  state.timers.push(
    setInterval(() => {
      if (state.live && state.pollError) updated.textContent = `Not updating: ${state.pollError}`;
      else if (state.live && state.lastUpdated) updated.textContent = `Updated ${relative(new Date(state.lastUpdated).toISOString())}`;
      else updated.textContent = state.live ? "" : "Paused";
    }, 1000),
  );
  state.reloadLogs = reload;
}

export function logRow(log) {
  const status = log.response_status_code ? `HTTP ${log.response_status_code}` : log.error ? "No response" : "—";
  return h(
    "li",
    { class: "log-row", dataset: { logId: log.id, outcome: log.outcome } },
    h(
      "button",
      { class: "log-open", type: "button", "aria-label": `Attempt ${log.attempt} of ${log.event_type} to ${configLabel(log.config_id)}: ${(OUTCOMES[log.outcome] || {}).label || log.outcome}. Open details`, onclick: () => openAttempt(log) },
      h("span", { class: "log-outcome" }, outcomePill(log.outcome)),
      h("span", { class: "log-type mono" }, log.event_type),
      h("span", { class: "log-endpoint" }, configLabel(log.config_id)),
      h("span", { class: "log-status mono" }, status),
      h("span", { class: "log-attempt muted" }, `#${log.attempt}`),
      h("span", { class: "log-duration muted" }, `${log.duration_ms} ms`),
      h("span", { class: "log-time" }, time(log.attempted_at)),
    ),
  );
}

export function detail(label, value, { mono = false } = {}) {
  return h("div", { class: "detail" }, h("dt", {}, label), h("dd", { class: mono ? "mono" : "" }, value || "—"));
}

export function openAttempt(log) {
  const retryNote = h("p", { class: "inline-note", id: "retry-note", role: "status", hidden: true });
  const retry = h("button", { class: "btn primary", type: "button", id: "retry-delivery" }, icon("refresh"), h("span", {}, "Retry delivery"));
  const body = h(
    "div",
    { class: "modal-body attempt" },
    h("div", { class: "attempt-summary" }, outcomePill(log.outcome), h("span", { class: "mono" }, log.event_type), h("span", { class: "muted" }, `attempt ${log.attempt}`)),
    h(
      "dl",
      { class: "details" },
      detail("URL", log.url, { mono: true }),
      detail("Status code", log.response_status_code ? String(log.response_status_code) : "no response"),
      detail("Duration", `${log.duration_ms} ms`),
      detail("Attempted", absolute(log.attempted_at)),
      detail("Next attempt", log.next_attempt_at ? `${absolute(log.next_attempt_at)} (${relative(log.next_attempt_at)})` : "none scheduled"),
      log.error ? detail("Error", log.error) : null,
      detail("Event", log.event_id, { mono: true }),
      detail("Delivery", log.delivery_id, { mono: true }),
      detail("Attempt id", log.id, { mono: true }),
    ),
    h("h3", {}, "Request body"),
    h("pre", { class: "code", tabindex: "0", "aria-label": "Request body" }, pretty(log.request_body)),
    h("h3", {}, "Response body ", log.response_body_truncated ? h("span", { class: "pill warn" }, "truncated") : null),
    log.response_body ? h("pre", { class: "code", tabindex: "0", "aria-label": "Response body" }, pretty(log.response_body)) : h("p", { class: "muted" }, "Empty"),
    canWrite() ? h("div", { class: "form-actions" }, retryNote, retry) : null,
  );
  dialog("Delivery attempt", body, { wide: true });
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
  if (canWrite()) retry.focus();
}
