// The endpoints screen: one card per configuration, the endpoint dialog,
// replay, secret rotation, test events.

import { api, canWrite, loadCatalog, loadConfigs, state } from "./api.js";
import { openEndpointForm } from "./endpoint-form.js";
import { absolute, confirmDialog, dialog, field, h, icon, loading, note, NOTE_KEEP_MS, relative, renderFailure, shortUrl, showError, time, toLocalInput } from "./dom.js";
import { awaitingVerification, isEd25519, signingActions, signingBlock } from "./signing.js";
import { openTestEvent, testSummary } from "./testevent.js";
import { endpointCharts, forgetStats } from "./charts.js";

const CONFIG_POLL_MS = 5000;

// Add (config null) or edit an endpoint; the list is refreshed after a save.
async function editEndpoint(config) {
  let catalog;
  try {
    catalog = await loadCatalog();
  } catch {
    return;
  }
  openEndpointForm(config, {
    catalog,
    onSaved: async (resp, createdText) => {
      await state.refreshEndpoints();
      if (resp.secret) showSecret(resp.secret, createdText);
    },
  });
}

export function healthOf(config) {
  const hl = config.health || {};
  const attempts = Number(hl.attempts || 0);
  const successes = Number(hl.successes || 0);
  return { ...hl, attempts, successes, failures: Number(hl.failures || 0), rate: attempts ? successes / attempts : null };
}

export function statusOf(config) {
  if (!config.enabled && config.disabled_reason) return { label: "Disabled by the service", tone: "bad" };
  if (!config.enabled) return { label: "Disabled", tone: "muted" };
  if (awaitingVerification(config)) return { label: "Awaiting verification", tone: "warn" };
  const hl = healthOf(config);
  if (hl.failing_since) return { label: "Failing", tone: "warn" };
  if (!hl.attempts) return { label: "No deliveries yet", tone: "muted" };
  return { label: "Healthy", tone: "ok" };
}

export function renderEndpoints() {
  const main = document.getElementById("main");
  const addError = h("p", { class: "inline-error", role: "alert", hidden: true });
  const list = h("div", { class: "endpoint-list", id: "endpoint-list", "aria-busy": "true" }, loading("Loading your endpoints…"));
  const stale = h("p", { class: "inline-note bad", id: "endpoints-stale", role: "alert", hidden: true });
  main.replaceChildren(
    h(
      "div",
      { class: "page-head" },
      h("div", {}, h("h1", {}, "Endpoints"), h("p", { class: "muted" }, "Where your organisation's events are delivered, and how each is doing.")),
      canWrite() ? h("div", { class: "head-actions" }, h("button", { class: "btn primary", type: "button", id: "add-endpoint", onclick: () => editEndpoint(null) }, icon("plus"), h("span", {}, "Add endpoint")), addError) : null,
    ),
    h("p", { class: "inline-note", id: "page-note", role: "status", hidden: true }),
    stale,
    list,
  );
  // Until the first list arrives: loading, or the failure with a retry (never
  // "No endpoints yet"). After that a failed refresh keeps the list, saying so.
  let shown = false;
  const refresh = async () => {
    try {
      await loadConfigs();
      stale.hidden = true;
      if (!shown) list.dataset.drawn = "";
      shown = true;
      drawEndpointList(list);
    } catch (err) {
      if (err.status === 401) return;
      if (shown) {
        stale.textContent = `Not up to date: ${err.message}`;
        stale.hidden = false;
      } else {
        list.removeAttribute("aria-busy");
        list.replaceChildren(renderFailure(err, () => {
          list.replaceChildren(loading("Loading your endpoints…"));
          refresh();
        }));
      }
    }
  };
  refresh();
  state.timers.push(setInterval(() => document.visibilityState === "visible" && refresh(), CONFIG_POLL_MS));
  state.refreshEndpoints = refresh;
}

export function drawEndpointList(list) {
  list.removeAttribute("aria-busy");
  // Redraw only when something changed, and keep the notes beside the buttons.
  const drawn = JSON.stringify(state.configs);
  if (list.dataset.drawn === drawn) return;
  list.dataset.drawn = drawn;
  const notes = [...list.querySelectorAll(".inline-note[id^='note-']")]
    .filter((slot) => !slot.hidden)
    .filter((slot) => slot.classList.contains("bad") || Date.now() - Number(slot.dataset.at || 0) < NOTE_KEEP_MS)
    .map((slot) => [slot.id, slot.textContent, slot.className, slot.dataset.at]);
  if (!state.configs.length) {
    list.replaceChildren(
      h(
        "div",
        { class: "empty" },
        h("h2", {}, "No endpoints yet"),
        h("p", { class: "muted" }, "Add the URL of a receiver and choose the events it should get. Every delivery is signed and retried until it succeeds."),
        canWrite() ? h("button", { class: "btn primary", type: "button", onclick: () => editEndpoint(null) }, icon("plus"), h("span", {}, "Add your first endpoint")) : null,
      ),
    );
    return;
  }
  const totals = state.configs.reduce(
    (acc, c) => {
      const hl = healthOf(c);
      acc.attempts += hl.attempts;
      acc.successes += hl.successes;
      acc.failing += c.enabled && hl.failing_since ? 1 : 0;
      acc.disabled += c.enabled ? 0 : 1;
      return acc;
    },
    { attempts: 0, successes: 0, failing: 0, disabled: 0 },
  );
  const summary = h(
    "dl",
    { class: "summary card", "aria-label": "Summary" },
    stat("Endpoints", state.configs.length.toLocaleString()),
    stat("Success rate", totals.attempts ? `${((100 * totals.successes) / totals.attempts).toFixed(1)}%` : "—"),
    stat("Attempts", totals.attempts.toLocaleString()),
    stat("Failing", totals.failing.toLocaleString(), totals.disabled ? h("span", { class: "muted sub" }, ` · ${totals.disabled} disabled`) : null),
  );
  // Keep focus where it was across a refresh.
  const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.focusKey : null;
  list.replaceChildren(summary, ...state.configs.map(endpointCard));
  if (focused) {
    const again = list.querySelector(`[data-focus-key="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
  for (const [id, text, className, at] of notes) {
    const slot = document.getElementById(id);
    if (slot) {
      slot.textContent = text;
      slot.className = className;
      slot.dataset.at = at;
      slot.hidden = false;
    }
  }
}

export function stat(label, value, extra) {
  return h("div", { class: "stat" }, h("dt", {}, label), h("dd", {}, value, extra || null));
}

export function endpointCard(config) {
  const status = statusOf(config);
  const hl = healthOf(config);
  const slot = h("p", { class: "inline-note", role: "status", hidden: true, id: `note-${config.id}` });
  const action = (label, iconName, handler, key) =>
    h(
      "button",
      { class: "btn small", type: "button", dataset: { focusKey: `${config.id}:${key}` }, onclick: () => handler(config, slot) },
      icon(iconName),
      h("span", {}, label),
    );
  const card = h(
    "article",
    { class: "card endpoint", dataset: { configId: config.id }, "aria-labelledby": `title-${config.id}` },
    h(
      "div",
      { class: "endpoint-head" },
      h("div", { class: "endpoint-title" }, h("h2", { id: `title-${config.id}`, class: "url", title: config.url }, config.url), config.description ? h("p", { class: "muted" }, config.description) : null),
      h("span", { class: `pill ${status.tone}` }, status.label),
    ),
    config.disabled_reason ? h("p", { class: "reason" }, config.disabled_reason) : null,
    h("ul", { class: "chips", "aria-label": "Event types" }, (config.event_types || []).map((t) => h("li", { class: "chip" }, t === "*" ? "All events" : t))),
    h(
      "dl",
      { class: "stats" },
      stat("Success rate", hl.rate === null ? "—" : `${(hl.rate * 100).toFixed(hl.rate === 1 ? 0 : 1)}%`),
      stat("Attempts", hl.attempts.toLocaleString()),
      stat("Failures", hl.failures.toLocaleString()),
      stat("Last success", hl.last_success_at ? time(hl.last_success_at) : "never"),
    ),
    h("p", { class: "help health-note" }, HEALTH_NOTE),
    endpointCharts(config.id),
    hl.last_error
      ? h("p", { class: "last-error" }, h("strong", {}, "Last error "), hl.last_error_at ? time(hl.last_error_at) : null, ": ", h("span", { class: "mono" }, hl.last_error))
      : null,
    h(
      "div",
      { class: "endpoint-meta muted" },
      h("span", { class: "mono" }, config.id),
      isEd25519(config) ? null : h("span", {}, "Secret ", h("span", { class: "mono" }, config.secret_hint || "—")),
    ),
    signingBlock(config, slot),
    headerList(config),
    h(
      "div",
      { class: "actions" },
      canWrite() ? action("Edit", "edit", (c) => editEndpoint(c), "edit") : null,
      canWrite() ? action("Send test event", "play", sendTest, "test") : null,
      action("Delivery log", "list", (c) => (location.hash = `#/logs?config_id=${encodeURIComponent(c.id)}`), "log"),
      canWrite() ? action("Replay failed…", "refresh", openReplay, "replay") : null,
      canWrite() ? action(isEd25519(config) ? "Rotate key" : "Rotate secret", "key", rotateSecret, "rotate") : null,
      ...signingActions(config, slot, action),
      canWrite() ? action(config.enabled ? "Disable" : "Enable", config.enabled ? "pause" : "play", toggleEnabled, "toggle") : null,
      canWrite() ? action("Delete", "trash", deleteEndpoint, "delete") : null,
    ),
    slot,
  );
  return card;
}

// What the counters count (test events go through the same path as published ones).
const HEALTH_NOTE = "Counts every HTTP attempt, test events included.";

// The names of the custom headers; the API never returns their values.
function headerList(config) {
  const names = config.header_names || [];
  if (!names.length) return null;
  return h(
    "div",
    { class: "endpoint-headers" },
    h("span", { class: "muted", id: `headers-${config.id}` }, "Custom headers"),
    h(
      "ul",
      { class: "chips", "aria-labelledby": `headers-${config.id}` },
      names.map((n) => h("li", { class: "chip header-chip" }, h("span", { class: "mono" }, n), h("span", { class: "masked", "aria-label": "value hidden" }, ": ••••••"))),
    ),
  );
}

export async function deleteEndpoint(config, slot) {
  const ok = await confirmDialog(
    "Delete this endpoint?",
    [
      `${config.url} stops receiving events at once, and its signing secret and custom headers are forgotten.`,
      "Deliveries still waiting for it (a retry not yet due) are cancelled: the log shows them as Cancelled. The attempts already made stay in the delivery log. This cannot be undone.",
    ],
    "Delete endpoint",
    { danger: true },
  );
  if (!ok) return;
  try {
    const resp = await api("DELETE", `/webhooks/configs/${config.id}`);
    const n = Number(resp.cancelled_deliveries || 0);
    await state.refreshEndpoints();
    note(
      document.getElementById("page-note"),
      `Deleted ${shortUrl(config.url)}. ${n ? `${n} pending ${n === 1 ? "delivery was" : "deliveries were"} cancelled.` : "No delivery was pending."}`,
      "ok",
    );
  } catch (err) {
    note(slot, err.message, "bad");
  }
}

export function sendTest(config, slot) {
  openTestEvent(config, (log) => {
    note(slot, `${testSummary(log)} It is in the delivery log.`, log.outcome === "OUTCOME_DELIVERED" ? "ok" : "bad");
    forgetStats(config.id);
    state.refreshEndpoints(); // the attempt counts in the endpoint's health
  });
}

export async function toggleEnabled(config, slot) {
  if (config.enabled) {
    const ok = await confirmDialog(
      "Disable this endpoint?",
      `${config.url} receives nothing while it is disabled: events published meanwhile are not queued for it and are not sent when you enable it again. Retries that come due meanwhile end as Failed without a request; Replay failed… sends them once it is enabled again.`,
      "Disable endpoint",
      { danger: true },
    );
    if (!ok) return;
  }
  try {
    await api("PUT", "/webhooks/configs", {
      id: config.id,
      url: config.url,
      event_types: config.event_types,
      description: config.description,
      enabled: !config.enabled,
    });
    await state.refreshEndpoints();
    const again = document.getElementById(`note-${config.id}`);
    if (again) note(again, config.enabled ? "Disabled: it receives nothing until you enable it again." : "Enabled: new events are delivered again.", "ok");
  } catch (err) {
    note(slot, err.message, "bad");
  }
}

export async function rotateSecret(config, slot) {
  const ok = await confirmDialog(
    isEd25519(config) ? "Rotate the signing key?" : "Rotate the signing secret?",
    isEd25519(config)
      ? "A new ed25519 key pair is generated; the service keeps the private key and your key set lists the new public key. The current key keeps signing alongside it for the grace period."
      : "A new secret is generated and shown once. The current one keeps signing alongside it for the grace period, so your receiver can switch without missing a delivery.",
    isEd25519(config) ? "Rotate key" : "Rotate secret",
  );
  if (!ok) return;
  try {
    const resp = await api("POST", `/webhooks/configs/${config.id}:rotate-secret`, {});
    const until = resp.previous_secret_expires_at ? ` The previous secret also signs until ${absolute(resp.previous_secret_expires_at)}.` : "";
    if (resp.secret) showSecret(resp.secret, `New signing secret for ${shortUrl(config.url)}.${until}`);
    else note(slot, `New ed25519 key ${resp.config.public_key}.${until.replace("secret", "key")}`, "ok"); // the service keeps the private key
    state.refreshEndpoints();
  } catch (err) {
    note(slot, err.message, "bad");
  }
}


export function showSecret(secret, text) {
  // A box that wraps the whole secret, however long (whsec_ and up to 88 characters).
  const field = h("textarea", { id: "new-secret", class: "mono secret-box", readonly: true, rows: "2", spellcheck: "false", "aria-describedby": "secret-help" });
  field.value = secret;
  const copied = h("span", { class: "inline-note ok", role: "status", hidden: true }, "Copied");
  const copy = h(
    "button",
    {
      class: "btn",
      type: "button",
      onclick: async () => {
        field.select();
        try {
          await navigator.clipboard.writeText(secret);
        } catch {
          document.execCommand("copy");
        }
        copied.hidden = false;
      },
    },
    "Copy",
  );
  const done = h("button", { class: "btn primary", type: "button" }, "I have stored it");
  const el = dialog(
    "Signing secret — shown once",
    h(
      "div",
      { class: "modal-body" },
      h("p", {}, text),
      h("label", { for: "new-secret" }, "Secret"),
      h("div", { class: "secret-row" }, field, copy),
      h("p", { class: "help", id: "secret-help" }, "Store it in your receiver's configuration now: it cannot be shown again. Receivers verify the webhook-signature header with it."),
      copied,
      h("div", { class: "form-actions" }, done),
    ),
  );
  done.addEventListener("click", () => el.close());
  const fit = () => {
    field.style.height = "auto";
    field.style.height = `${field.scrollHeight + 2}px`;
  };
  fit();
  window.addEventListener("resize", fit);
  el.addEventListener("close", () => window.removeEventListener("resize", fit));
  field.focus();
  field.select();
}

// The event-type chooser: the catalog (GET /webhooks/event-types) grouped by
// category, with "all of a category" and "all events"; patterns outside the

export function openReplay(config) {
  const now = new Date();
  const since = h("input", { type: "datetime-local", required: true, value: toLocalInput(new Date(now - 86400000)) });
  const until = h("input", { type: "datetime-local", required: true, value: toLocalInput(new Date(now.getTime() + 60000)) });
  const failed = h("input", { type: "checkbox", id: "replay-failed", checked: true });
  const dead = h("input", { type: "checkbox", id: "replay-dead", checked: true });
  const result = h("p", { class: "inline-note", role: "status", hidden: true });
  const error = h("p", { class: "inline-error", id: "replay-error", role: "alert", hidden: true });
  const submit = h("button", { class: "btn primary", type: "submit" }, "Replay");
  const form = h(
    "form",
    { class: "modal-body" },
    h("p", { class: "muted" }, `Deliveries to ${shortUrl(config.url)} whose events were published in this range and that did not get through are attempted again now.`),
    h("div", { class: "row" }, field("since", "From", since), field("until", "Until", until)),
    h(
      "fieldset",
      { class: "plain" },
      h("legend", {}, "Which deliveries"),
      h("div", { class: "check" }, failed, h("label", { for: "replay-failed" }, "Failed (a final error such as HTTP 400)")),
      h("div", { class: "check" }, dead, h("label", { for: "replay-dead" }, "Dead (every retry used up)")),
    ),
    result,
    h("div", { class: "form-actions" }, error, submit),
  );
  dialog("Replay failed deliveries", form);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(error, null);
    result.hidden = true;
    const outcomes = [];
    if (failed.checked) outcomes.push("OUTCOME_FAILED");
    if (dead.checked) outcomes.push("OUTCOME_DEAD");
    try {
      const resp = await api("POST", `/webhooks/configs/${config.id}:replay`, {
        since: new Date(since.value).toISOString(),
        until: new Date(until.value).toISOString(),
        outcomes,
      });
      const n = Number(resp.replayed || 0);
      note(result, n ? `${n} ${n === 1 ? "delivery is" : "deliveries are"} being attempted again.` : "Nothing to replay in this range.", n ? "ok" : "muted");
    } catch (err) {
      let placed = false;
      for (const v of err.violations) {
        const slot = form.querySelector(`#${CSS.escape(v.field)}-error`);
        if (slot) {
          slot.textContent = v.description;
          slot.hidden = false;
          placed = true;
        }
      }
      if (!placed) showError(error, err);
    }
  });
}
