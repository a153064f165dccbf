// The delivery log: filters (every one kept in the address, so a link
// reproduces the view), live updates, pages, and the states (loading, the
// API unreachable, nothing matching) that never contradict each other.

import { api, fieldLabel, loadCatalog, loadConfigs, OUTCOMES, query, state } from "./api.js";
import { openAttempt } from "./attempt.js";
import { field, h, loading, outcomePill, relative, renderFailure, shortUrl, showError, time, toLocalInput } from "./dom.js";
import { subscribable, TEST_EVENT_TYPE } from "./picker.js";

const LOG_POLL_MS = 2500;
const PAGE_SIZE = 25;

// The API's StatusClass enum, in an admin's words.
export const STATUS_CLASSES = {
  STATUS_CLASS_2XX: "2xx success",
  STATUS_CLASS_3XX: "3xx redirect",
  STATUS_CLASS_4XX: "4xx refused",
  STATUS_CLASS_5XX: "5xx server error",
  STATUS_CLASS_NO_RESPONSE: "No response",
};

// The filters, in the order of the address: ListDeliveryLogs' own parameter names.
export const FILTERS = ["config_id", "event_type", "outcome", "status_class", "event_id", "since", "until"];

export function filtersFrom(params) {
  return Object.fromEntries(FILTERS.map((k) => [k, params.get(k) || ""]));
}

export function logsHash(filters) {
  return `#/logs${query(Object.fromEntries(FILTERS.map((k) => [k, filters[k] || ""])))}`;
}

// An attempt's endpoint: its URL as configured now, or as it was when it was deleted.
export function endpointLabel(log) {
  const config = state.configs.find((c) => c.id === log.config_id);
  if (config) return shortUrl(config.url);
  if (log.url) return `${shortUrl(log.url)}${log.endpoint_deleted ? " (deleted)" : ""}`;
  return log.config_id;
}

function isoFromLocal(value) {
  if (!value) return "";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? "" : date.toISOString();
}

function localFromIso(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : toLocalInput(date);
}

export function renderLogs(params) {
  state.filters = filtersFrom(params);
  const main = document.getElementById("main");
  const filterError = h("p", { class: "inline-error", id: "filter-error", role: "alert", hidden: true });
  const configSelect = h("select", {}, h("option", { value: "" }, "All endpoints"));
  const eventType = h("input", { type: "text", list: "event-type-options", spellcheck: "false", autocomplete: "off", placeholder: "Any type, or reward.*", value: state.filters.event_type });
  const datalist = h("datalist", { id: "event-type-options" });
  const outcome = h(
    "select",
    {},
    h("option", { value: "" }, "Any outcome"),
    Object.entries(OUTCOMES).map(([value, o]) => h("option", { value, selected: state.filters.outcome === value }, o.label)),
  );
  const statusClass = h(
    "select",
    {},
    h("option", { value: "" }, "Any status"),
    Object.entries(STATUS_CLASSES).map(([value, label]) => h("option", { value, selected: state.filters.status_class === value }, label)),
  );
  const eventId = h("input", { type: "search", spellcheck: "false", placeholder: "evt_…", value: state.filters.event_id });
  const since = h("input", { type: "datetime-local", value: localFromIso(state.filters.since) });
  const until = h("input", { type: "datetime-local", value: localFromIso(state.filters.until) });
  const quick = (label, hours) =>
    h(
      "button",
      {
        class: "btn small",
        type: "button",
        onclick: () => {
          since.value = hours ? toLocalInput(new Date(Date.now() - hours * 3600000)) : "";
          until.value = "";
          onFilter();
        },
      },
      label,
    );
  const liveBox = h("input", { type: "checkbox", id: "live", checked: state.live });
  const updated = h("span", { class: "muted updated", id: "updated", "aria-live": "off" });
  const list = h("ol", { class: "log-list", id: "log-list", "aria-label": "Delivery attempts, newest first", "aria-busy": "true" });
  const columns = h(
    "div",
    { class: "log-columns", "aria-hidden": "true" },
    ["Outcome", "Event type", "Endpoint", "Response", "Try", "Duration", "When"].map((c) => h("span", {}, c)),
  );
  const more = h("button", { class: "btn", type: "button", id: "load-more", hidden: true }, "Load older attempts");
  const moreError = h("p", { class: "inline-error", role: "alert", hidden: true });
  const clear = h("button", { class: "btn small", type: "button", id: "clear-filters" }, "Clear filters");
  const filters = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter the delivery log", onsubmit: (e) => e.preventDefault() },
    field("filter-config", "Endpoint", configSelect),
    field("filter-type", "Event type", eventType),
    field("filter-outcome", "Outcome", outcome),
    field("filter-status", "Response", statusClass),
    field("filter-event", "Event id", eventId),
    field("filter-since", "From", since),
    field("filter-until", "Until", until),
    h("div", { class: "quick-range", role: "group", "aria-label": "Time range" }, quick("Last hour", 1), quick("Last 24 h", 24), quick("Last 7 days", 168), quick("Any time", 0)),
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
  list.replaceChildren(h("li", { class: "state-row" }, loading("Loading the delivery log…")));

  // The endpoint filter names endpoints by URL, deleted ones too (from the attempts shown).
  const fillConfigs = () => {
    const current = state.filters.config_id;
    configSelect.replaceChildren(
      h("option", { value: "" }, "All endpoints"),
      ...state.configs.map((c) => h("option", { value: c.id, selected: c.id === current }, shortUrl(c.url))),
    );
    if (current && !state.configs.some((c) => c.id === current)) {
      const seen = state.logs.find((l) => l.config_id === current);
      configSelect.append(h("option", { value: current, selected: true }, seen ? endpointLabel(seen) : current));
    }
  };
  loadConfigs().then(fillConfigs, () => {});
  loadCatalog().then(
    (catalog) => {
      const names = ["*", ...subscribable(catalog).flatMap(([c, types]) => [`${c}.*`, ...types.map((t) => t.name)]), TEST_EVENT_TYPE];
      datalist.replaceChildren(...names.map((n) => h("option", { value: n }, n === "*" ? "every type" : n.endsWith(".*") ? `every ${n.slice(0, -2)} type` : "")));
    },
    () => {},
  );

  const readFilters = () => ({
    config_id: configSelect.value,
    event_type: eventType.value.trim(),
    outcome: outcome.value,
    status_class: statusClass.value,
    event_id: eventId.value.trim(),
    since: isoFromLocal(since.value),
    until: isoFromLocal(until.value),
  });
  const filtered = () => FILTERS.some((k) => state.filters[k]);

  const emptyRow = () =>
    filtered()
      ? h("li", { class: "empty-row" }, h("p", {}, "No attempts match these filters."), clear)
      : h("li", { class: "empty-row" }, "No attempts yet. Publish an event, or send a test event to an endpoint.");

  const draw = () => {
    list.removeAttribute("aria-busy");
    list.replaceChildren(...(state.logs.length ? state.logs.map(logRow) : [emptyRow()]));
    more.hidden = !state.nextPageToken;
  };

  const fetchPage = (token) => api("GET", `/webhooks/logs${query({ ...state.filters, page_size: PAGE_SIZE, page_token: token })}`);

  const fieldIds = { config_id: "filter-config", event_type: "filter-type", outcome: "filter-outcome", status_class: "filter-status", event_id: "filter-event", since: "filter-since", until: "filter-until" };
  let generation = 0; // a reload's answer is drawn only if no newer reload started
  const reload = async () => {
    const mine = ++generation;
    showError(filterError, null);
    for (const slot of filters.querySelectorAll(".field-error")) slot.hidden = true;
    for (const input of filters.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
    state.pollError = null;
    try {
      const page = await fetchPage("");
      if (mine !== generation) return;
      state.logs = page.logs || [];
      state.nextPageToken = page.next_page_token;
      state.lastUpdated = Date.now();
      state.failed = false;
      draw();
      fillConfigs();
    } catch (err) {
      if (err.status === 401 || mine !== generation) return;
      state.logs = [];
      state.nextPageToken = "";
      state.failed = true;
      more.hidden = true;
      list.removeAttribute("aria-busy");
      // A filter the API refused: said beside it, and the list says why it is empty.
      let placed = false;
      for (const v of err.violations) {
        const id = fieldIds[v.field.split(/[.[]/)[0]];
        const slot = id && filters.querySelector(`#${id}-error`);
        if (!slot) continue;
        slot.textContent = v.description;
        slot.hidden = false;
        filters.querySelector(`#${id}`).setAttribute("aria-invalid", "true");
        placed = true;
      }
      if (placed) {
        list.replaceChildren(h("li", { class: "empty-row" }, `No attempts shown: fix the ${err.violations.map((v) => fieldLabel(v.field).toLowerCase()).join(" and ")} filter above.`));
      } else {
        list.replaceChildren(h("li", { class: "state-row" }, renderFailure(err, () => {
          list.replaceChildren(h("li", { class: "state-row" }, loading("Loading the delivery log…")));
          reload();
        })));
      }
    }
  };

  // Live updates: the newest page again, new attempts merged in at the top.
  const poll = async () => {
    if (!state.live || state.failed || document.visibilityState !== "visible") return;
    const mine = generation;
    try {
      const page = await fetchPage("");
      if (mine !== generation) return;
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
    history.replaceState(null, "", logsHash(state.filters));
    reload();
  };
  clear.addEventListener("click", () => {
    for (const input of [configSelect, eventType, outcome, statusClass, eventId, since, until]) input.value = "";
    onFilter();
  });
  for (const input of [configSelect, outcome, statusClass, eventType, eventId, since, until]) input.addEventListener("change", onFilter);
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

export function statusText(log) {
  if (log.response_status_code) return `HTTP ${log.response_status_code}`;
  if (log.outcome === "OUTCOME_CANCELLED") return "Not sent";
  return log.error ? "No response" : "—";
}

export function logRow(log) {
  return h(
    "li",
    { class: "log-row", dataset: { logId: log.id, outcome: log.outcome } },
    h(
      "button",
      { class: "log-open", type: "button", title: "Open the attempt's details", onclick: () => openAttempt(log) },
      h("span", { class: "log-outcome" }, outcomePill(log.outcome)),
      h("span", { class: "log-type mono" }, log.event_type),
      h("span", { class: "log-endpoint" }, endpointLabel(log)),
      h("span", { class: "log-status mono" }, statusText(log)),
      h("span", { class: "log-attempt muted" }, `#${log.attempt}`),
      h("span", { class: "log-duration muted" }, `${log.duration_ms} ms`),
      h("span", { class: "log-time" }, time(log.attempted_at)),
    ),
  );
}
