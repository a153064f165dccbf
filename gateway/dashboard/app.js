// The webhooks dashboard: one page, plain JavaScript, no build step, no
// dependency. It talks only to the public REST API of the gateway that serves
// it (same origin), with the bearer token of the session:
//   * a portal session (`#token=wpt_…` in the link CreatePortalSession made;
//     read from the fragment, then removed from the address bar), or
//   * an API key pasted on the sign-in screen.
// The token is kept in sessionStorage (this tab only, gone when it closes),
// never in localStorage or a cookie. Untrusted text (URLs, bodies, errors) is
// only ever set with textContent, never parsed as HTML.

const TOKEN_KEY = "webhooks.dashboard.token";
const META_KEY = "webhooks.dashboard.session"; // {expires_at, scopes} of a portal session
const LOG_POLL_MS = 2500;
const CONFIG_POLL_MS = 5000;
const PAGE_SIZE = 25;

const OUTCOMES = {
  OUTCOME_DELIVERED: { label: "Delivered", tone: "ok" },
  OUTCOME_RETRY_SCHEDULED: { label: "Retrying", tone: "warn" },
  OUTCOME_FAILED: { label: "Failed", tone: "bad" },
  OUTCOME_DEAD: { label: "Dead", tone: "dead" },
};

// ---------------------------------------------------------------------------
// small DOM helpers

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function icon(name) {
  const paths = {
    plus: "M12 5v14M5 12h14",
    play: "M7 5l12 7-12 7z",
    key: "M15 7a4 4 0 1 1-3.9 4.9L4 19v-3h3v-3h3l1.1-1.1A4 4 0 0 1 15 7z",
    refresh: "M20 11a8 8 0 1 0-2.3 5.7M20 5v6h-6",
    pause: "M8 5v14M16 5v14",
    edit: "M4 20h4L19 9l-4-4L4 16zM14 6l4 4",
    list: "M8 6h12M8 12h12M8 18h12M4 6h.01M4 12h.01M4 18h.01",
    out: "M15 12H4M11 8l-4 4 4 4M14 4h6v16h-6",
    x: "M6 6l12 12M18 6L6 18",
    hook: "M9.5 6a2.5 2.5 0 1 0 5 0a2.5 2.5 0 1 0-5 0M3.5 17a2.5 2.5 0 1 0 5 0a2.5 2.5 0 1 0-5 0M15.5 17a2.5 2.5 0 1 0 5 0a2.5 2.5 0 1 0-5 0M10.8 8.2L7.2 14.8M13.2 8.2l3.6 6.6M8.5 17h7",
  };
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("class", "icon");
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", paths[name]);
  svg.append(path);
  return svg;
}

function relative(iso) {
  if (!iso) return "never";
  const seconds = (Date.parse(iso) - Date.now()) / 1000;
  const abs = Math.abs(seconds);
  const fmt = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  if (abs < 45) return seconds < 0 ? "just now" : "in a few seconds";
  if (abs < 3600) return fmt.format(Math.round(seconds / 60), "minute");
  if (abs < 86400) return fmt.format(Math.round(seconds / 3600), "hour");
  return fmt.format(Math.round(seconds / 86400), "day");
}

function absolute(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

function time(iso) {
  return h("time", { datetime: iso || "", title: absolute(iso) }, relative(iso));
}

function pretty(text) {
  if (!text) return "";
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

function shortUrl(url) {
  try {
    const u = new URL(url);
    return u.host + (u.pathname === "/" ? "" : u.pathname);
  } catch {
    return url;
  }
}

// ---------------------------------------------------------------------------
// the REST API

class ApiError extends Error {
  constructor(status, body) {
    super(body.message || `HTTP ${status}`);
    this.status = status;
    this.code = body.code;
    this.violations = [];
    for (const detail of body.details || []) {
      for (const v of detail.field_violations || []) this.violations.push(v);
    }
  }
}

const session = {
  token: null,
  meta: {}, // a portal link's expires_at and scopes; unknown for a pasted key
  onSignedOut: null,
};

// A portal session without webhooks:write: the changing controls are not shown.
function canWrite() {
  const scopes = session.meta.scopes;
  return !scopes || scopes.includes("webhooks:write");
}

async function api(method, path, body) {
  const init = { method, headers: { authorization: `Bearer ${session.token}` } };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch {
    throw new ApiError(0, { message: "The gateway cannot be reached. Check your connection." });
  }
  const text = await resp.text();
  let data = {};
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    data = { message: text };
  }
  if (!resp.ok) {
    const err = new ApiError(resp.status, data);
    if (resp.status === 401 && session.onSignedOut) session.onSignedOut(err.message);
    throw err;
  }
  return data;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value) q.set(key, value);
  const text = q.toString();
  return text ? `?${text}` : "";
}

// ---------------------------------------------------------------------------
// state

const state = {
  view: "endpoints",
  configs: [],
  configsLoaded: false,
  catalog: null, // [{name, category, description}] or [] when the gateway has none
  logs: [],
  nextPageToken: "",
  filters: { config_id: "", event_type: "", outcome: "", event_id: "" },
  live: true,
  lastUpdated: null,
  timers: [],
};

// ---------------------------------------------------------------------------
// error display: in words, next to the control that caused it

function showError(slot, err) {
  slot.textContent = err ? err.message || String(err) : "";
  slot.hidden = !err;
}

function note(slot, text, tone = "ok") {
  slot.textContent = text;
  slot.className = `inline-note ${tone}`;
  slot.hidden = !text;
  slot.dataset.at = String(Date.now());
}

const NOTE_KEEP_MS = 20000; // a success note stays this long; an error until the next action

// ---------------------------------------------------------------------------
// sign-in

function tokenFromFragment() {
  if (!/^#(.*&)?token=/.test(location.hash)) return null;
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  const meta = {};
  if (params.get("expires_at")) meta.expires_at = params.get("expires_at");
  if (params.get("scopes")) meta.scopes = params.get("scopes").split(" ").filter(Boolean);
  // Out of the address bar (and so out of history and bookmarks) at once.
  history.replaceState(null, "", location.pathname + location.search + "#/endpoints");
  sessionStorage.setItem(TOKEN_KEY, token);
  sessionStorage.setItem(META_KEY, JSON.stringify(meta));
  session.meta = meta;
  return token;
}

function renderSignIn(message) {
  stopTimers();
  const app = document.getElementById("app");
  const error = h("p", { class: "inline-error", id: "signin-error", role: "alert", hidden: !message }, message || "");
  const input = h("input", {
    id: "api-key",
    name: "api-key",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    placeholder: "whk_…",
    "aria-describedby": "api-key-help signin-error",
  });
  const form = h(
    "form",
    {
      class: "signin-card",
      onsubmit: async (event) => {
        event.preventDefault();
        const token = input.value.trim();
        if (!token) return showError(error, new Error("Paste an API key first."));
        session.token = token;
        try {
          await api("GET", "/webhooks/configs?page_size=1");
        } catch (err) {
          session.token = null;
          input.setAttribute("aria-invalid", "true");
          return showError(error, err);
        }
        sessionStorage.setItem(TOKEN_KEY, token);
        sessionStorage.removeItem(META_KEY);
        session.meta = {};
        start();
      },
    },
    h("div", { class: "brand brand-large" }, icon("hook"), h("span", {}, "Webhooks")),
    h("h1", {}, "Sign in to your dashboard"),
    h(
      "p",
      { class: "muted" },
      "Open the dashboard from your platform, or paste an API key with the webhooks:read scope (webhooks:write to make changes).",
    ),
    h("label", { for: "api-key" }, "API key"),
    input,
    h("p", { class: "help", id: "api-key-help" }, "Kept in this browser tab only, and forgotten when you close it."),
    error,
    h("button", { class: "btn primary wide", type: "submit" }, "Sign in"),
  );
  app.replaceChildren(h("main", { id: "main", class: "signin" }, form));
  input.focus();
}

function signOut(message) {
  stopTimers();
  const token = session.token;
  session.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(META_KEY);
  session.meta = {};
  if (token && token.startsWith("wpt_") && !message) {
    // End the portal session on the server too (needs webhooks:write; a
    // read-only session simply expires).
    const id = "wps_" + token.slice(4).split("_")[0];
    fetch(`/webhooks/portal-sessions/${id}:revoke`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: "{}",
    }).catch(() => {});
  }
  renderSignIn(message);
}

// ---------------------------------------------------------------------------
// the shell: header, navigation, main

function stopTimers() {
  for (const t of state.timers) clearInterval(t);
  state.timers = [];
}

function renderShell() {
  const app = document.getElementById("app");
  let kind = session.token.startsWith("wpt_") ? "Portal session" : "API key";
  if (session.meta.expires_at) {
    const until = new Date(session.meta.expires_at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    kind += ` · until ${until}`;
  }
  const nav = h(
    "nav",
    { class: "tabs", "aria-label": "Sections" },
    navLink("endpoints", "Endpoints"),
    navLink("logs", "Delivery log"),
  );
  const header = h(
    "header",
    { class: "topbar" },
    h("div", { class: "brand" }, icon("hook"), h("span", {}, "Webhooks")),
    nav,
    h(
      "div",
      { class: "account" },
      canWrite() ? null : h("span", { class: "pill muted", id: "read-only" }, "Read-only"),
      h("span", { class: "session-kind", title: "How you are signed in" }, kind),
      h("button", { class: "btn ghost", type: "button", onclick: () => signOut() }, icon("out"), h("span", {}, "Sign out")),
    ),
  );
  const ending = h("div", { class: "session-ending", role: "status", hidden: true });
  app.replaceChildren(header, ending, h("main", { id: "main", tabindex: "-1" }));
  watchExpiry(ending);
}

// A portal session ends at expires_at: warn five minutes before, then sign out.
function watchExpiry(banner) {
  if (!session.meta.expires_at) return;
  const end = Date.parse(session.meta.expires_at);
  const check = () => {
    const left = end - Date.now();
    if (left <= 0) {
      clearInterval(timer);
      signOut(`Your portal session expired at ${absolute(session.meta.expires_at)}. Open the dashboard again from your platform, or sign in with an API key.`);
    } else if (left < 5 * 60 * 1000) {
      banner.textContent = `Your session ends ${relative(session.meta.expires_at)}. Open the dashboard again from your platform to go on.`;
      banner.hidden = false;
    }
  };
  const timer = setInterval(check, 15000);
  check();
}

function navLink(view, label) {
  return h("a", { href: `#/${view}`, class: "tab", dataset: { view } }, label);
}

function route() {
  const view = (location.hash.match(/^#\/(\w+)/) || [])[1] || "endpoints";
  state.view = view === "logs" ? "logs" : "endpoints";
  for (const link of document.querySelectorAll(".tab")) {
    if (link.dataset.view === state.view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  if (state.view === "logs") {
    // The address says which endpoint's log this is (a bookmark, the back button).
    state.filters = { ...state.filters, config_id: params.get("config_id") || "" };
  }
  stopTimers();
  document.title = `${state.view === "logs" ? "Delivery log" : "Endpoints"} · Webhooks`;
  if (state.view === "logs") renderLogs();
  else renderEndpoints();
}

// ---------------------------------------------------------------------------
// endpoints

async function loadConfigs() {
  const all = [];
  let token = "";
  do {
    const page = await api("GET", `/webhooks/configs${query({ page_size: 100, page_token: token })}`);
    all.push(...(page.configs || []));
    token = page.next_page_token;
  } while (token);
  state.configs = all;
  state.configsLoaded = true;
  return all;
}

async function loadCatalog() {
  if (state.catalog !== null) return state.catalog;
  try {
    const data = await api("GET", "/webhooks/event-types");
    state.catalog = (data.event_types || []).map((t) => ({
      name: t.name,
      category: t.category || t.name.split(".")[0],
      description: t.description || "",
    }));
  } catch (err) {
    if (err.status === 401) throw err;
    state.catalog = []; // this gateway has no catalog: patterns are typed in
  }
  return state.catalog;
}

function healthOf(config) {
  const hl = config.health || {};
  const attempts = Number(hl.attempts || 0);
  const successes = Number(hl.successes || 0);
  return { ...hl, attempts, successes, failures: Number(hl.failures || 0), rate: attempts ? successes / attempts : null };
}

function statusOf(config) {
  if (!config.enabled && config.disabled_reason) return { label: "Disabled by the service", tone: "bad" };
  if (!config.enabled) return { label: "Disabled", tone: "muted" };
  const hl = healthOf(config);
  if (hl.failing_since) return { label: "Failing", tone: "warn" };
  if (!hl.attempts) return { label: "No deliveries yet", tone: "muted" };
  return { label: "Healthy", tone: "ok" };
}

function renderEndpoints() {
  const main = document.getElementById("main");
  const addError = h("p", { class: "inline-error", role: "alert", hidden: true });
  const list = h("div", { class: "endpoint-list", id: "endpoint-list", "aria-busy": "true" });
  main.replaceChildren(
    h(
      "div",
      { class: "page-head" },
      h("div", {}, h("h1", {}, "Endpoints"), h("p", { class: "muted" }, "Where your organisation's events are delivered, and how each is doing.")),
      canWrite() ? h("div", { class: "head-actions" }, h("button", { class: "btn primary", type: "button", id: "add-endpoint", onclick: () => openEndpointForm(null) }, icon("plus"), h("span", {}, "Add endpoint")), addError) : null,
    ),
    list,
  );
  const refresh = async () => {
    try {
      await loadConfigs();
      drawEndpointList(list);
    } catch (err) {
      if (err.status !== 401) list.replaceChildren(h("p", { class: "inline-error", role: "alert" }, err.message));
    }
  };
  refresh();
  state.timers.push(setInterval(() => document.visibilityState === "visible" && refresh(), CONFIG_POLL_MS));
  state.refreshEndpoints = refresh;
}

function drawEndpointList(list) {
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
        canWrite() ? h("button", { class: "btn primary", type: "button", onclick: () => openEndpointForm(null) }, icon("plus"), h("span", {}, "Add your first endpoint")) : null,
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

function stat(label, value, extra) {
  return h("div", { class: "stat" }, h("dt", {}, label), h("dd", {}, value, extra || null));
}

function endpointCard(config) {
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
    hl.last_error
      ? h("p", { class: "last-error" }, h("strong", {}, "Last error "), hl.last_error_at ? time(hl.last_error_at) : null, ": ", h("span", { class: "mono" }, hl.last_error))
      : null,
    h(
      "div",
      { class: "endpoint-meta muted" },
      h("span", { class: "mono" }, config.id),
      h("span", {}, "Secret ", h("span", { class: "mono" }, config.secret_hint || "—")),
    ),
    h(
      "div",
      { class: "actions" },
      canWrite() ? action("Edit", "edit", (c) => openEndpointForm(c), "edit") : null,
      canWrite() ? action("Send test event", "play", sendTest, "test") : null,
      action("Delivery log", "list", (c) => (location.hash = `#/logs?config_id=${encodeURIComponent(c.id)}`), "log"),
      canWrite() ? action("Replay failed…", "refresh", openReplay, "replay") : null,
      canWrite() ? action("Rotate secret", "key", rotateSecret, "rotate") : null,
      canWrite() ? action(config.enabled ? "Disable" : "Enable", config.enabled ? "pause" : "play", toggleEnabled, "toggle") : null,
    ),
    slot,
  );
  return card;
}

async function sendTest(config, slot) {
  note(slot, "Sending a test event…", "muted");
  try {
    const { log } = await api("POST", `/webhooks/configs/${config.id}:test`, {});
    const outcome = OUTCOMES[log.outcome] || { label: log.outcome, tone: "muted" };
    const what = log.response_status_code ? `HTTP ${log.response_status_code}` : log.error || "no response";
    note(slot, `Test event ${outcome.label.toLowerCase()}: ${what} in ${log.duration_ms} ms. It is in the delivery log.`, outcome.tone === "ok" ? "ok" : "bad");
  } catch (err) {
    note(slot, err.message, "bad");
  }
}

async function toggleEnabled(config, slot) {
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

async function rotateSecret(config, slot) {
  const ok = await confirmDialog(
    "Rotate the signing secret?",
    "A new secret is generated and shown once. The current one keeps signing alongside it for the grace period, so your receiver can switch without missing a delivery.",
    "Rotate secret",
  );
  if (!ok) return;
  try {
    const resp = await api("POST", `/webhooks/configs/${config.id}:rotate-secret`, {});
    const until = resp.previous_secret_expires_at ? ` The previous secret also signs until ${absolute(resp.previous_secret_expires_at)}.` : "";
    showSecret(resp.secret, `New signing secret for ${shortUrl(config.url)}.${until}`);
    state.refreshEndpoints();
  } catch (err) {
    note(slot, err.message, "bad");
  }
}

// ---------------------------------------------------------------------------
// dialogs

function dialog(title, body, { wide = false, onClose } = {}) {
  const closeBtn = h("button", { class: "icon-btn", type: "button", "aria-label": "Close" }, icon("x"));
  const el = h(
    "dialog",
    { class: wide ? "modal wide" : "modal", "aria-labelledby": "dialog-title" },
    h("div", { class: "modal-head" }, h("h2", { id: "dialog-title" }, title), closeBtn),
    body,
  );
  closeBtn.addEventListener("click", () => el.close());
  el.addEventListener("close", () => {
    el.remove();
    if (onClose) onClose();
  });
  document.body.append(el);
  el.showModal();
  return el;
}

function confirmDialog(title, text, confirmLabel) {
  return new Promise((resolve) => {
    let answer = false;
    const yes = h("button", { class: "btn primary", type: "button" }, confirmLabel);
    const no = h("button", { class: "btn", type: "button" }, "Cancel");
    const el = dialog(title, h("div", { class: "modal-body" }, h("p", {}, text), h("div", { class: "form-actions" }, no, yes)), {
      onClose: () => resolve(answer),
    });
    yes.addEventListener("click", () => {
      answer = true;
      el.close();
    });
    no.addEventListener("click", () => el.close());
    yes.focus();
  });
}

function showSecret(secret, text) {
  const field = h("input", { id: "new-secret", class: "mono", readonly: true, value: secret, "aria-describedby": "secret-help" });
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
  field.focus();
  field.select();
}

// The event-type chooser: the catalog (GET /webhooks/event-types) grouped by
// category, with "all of a category" and "all events"; patterns outside the
// catalog (or every pattern, when the gateway has no catalog) are typed in.
function eventTypeChooser(selected, catalog) {
  const chosen = new Set(selected);
  const all = h("input", { type: "checkbox", id: "et-all", checked: chosen.has("*") });
  const groups = new Map();
  for (const t of catalog) {
    if (!groups.has(t.category)) groups.set(t.category, []);
    groups.get(t.category).push(t);
  }
  const known = new Set(["*", ...catalog.map((t) => t.name), ...[...groups.keys()].map((c) => `${c}.*`)]);
  const other = h("input", {
    id: "et-other",
    type: "text",
    spellcheck: "false",
    value: selected.filter((p) => !known.has(p)).join(", "),
    placeholder: catalog.length ? "e.g. reward.*" : "e.g. reward.*, user.authenticated",
    "aria-describedby": "et-other-help",
  });
  const fieldsets = [...groups.entries()].map(([category, types]) => {
    const catBox = h("input", { type: "checkbox", id: `et-cat-${category}`, checked: chosen.has(`${category}.*`), dataset: { pattern: `${category}.*` } });
    const typeBoxes = types.map((t) =>
      h(
        "div",
        { class: "check" },
        h("input", { type: "checkbox", id: `et-${t.name}`, checked: chosen.has(t.name), dataset: { pattern: t.name, category }, "aria-describedby": `et-desc-${t.name}` }),
        h("label", { for: `et-${t.name}` }, h("span", { class: "mono" }, t.name), h("span", { class: "desc", id: `et-desc-${t.name}` }, t.description)),
      ),
    );
    const sync = () => {
      for (const box of typeBoxes) box.querySelector("input").disabled = catBox.checked || all.checked;
      catBox.disabled = all.checked;
    };
    catBox.addEventListener("change", sync);
    all.addEventListener("change", sync);
    queueMicrotask(sync);
    return h(
      "fieldset",
      { class: "category" },
      h("legend", {}, category),
      h("div", { class: "check strong" }, catBox, h("label", { for: catBox.id }, `All ${category} events`, h("span", { class: "mono muted" }, ` ${category}.*`))),
      typeBoxes,
    );
  });
  const el = h(
    "div",
    { class: "chooser", id: "event-types", role: "group", "aria-labelledby": "et-label", "aria-describedby": "event_types-error" },
    h("div", { class: "check strong all" }, all, h("label", { for: "et-all" }, "All events", h("span", { class: "mono muted" }, " *"))),
    h("div", { class: "categories" }, fieldsets),
    h("label", { for: "et-other" }, catalog.length ? "Other patterns" : "Event types"),
    other,
    h("p", { class: "help", id: "et-other-help" }, "Comma-separated dotted names or category wildcards."),
  );
  el.patterns = () => {
    if (all.checked) return ["*"];
    const out = [];
    for (const box of el.querySelectorAll("input[type=checkbox][data-pattern]")) {
      if (box.checked && !box.disabled) out.push(box.dataset.pattern);
    }
    for (const part of other.value.split(",")) if (part.trim()) out.push(part.trim());
    return out;
  };
  return el;
}

function field(id, label, input, help) {
  input.id = id;
  input.name = id;
  const error = h("p", { class: "field-error", id: `${id}-error`, role: "alert", hidden: true });
  input.setAttribute("aria-describedby", [help ? `${id}-help` : null, `${id}-error`].filter(Boolean).join(" "));
  return h("div", { class: "field", dataset: { field: id } }, h("label", { for: id }, label), input, help ? h("p", { class: "help", id: `${id}-help` }, help) : null, error);
}

async function openEndpointForm(config) {
  let catalog = [];
  try {
    catalog = await loadCatalog();
  } catch {
    return;
  }
  const editing = Boolean(config);
  const url = h("input", { type: "url", inputmode: "url", required: true, spellcheck: "false", autocomplete: "off", value: editing ? config.url : "", placeholder: "https://example.com/webhooks" });
  const description = h("input", { type: "text", maxlength: "256", value: editing ? config.description : "", placeholder: "What this endpoint is for" });
  const enabled = h("input", { type: "checkbox", id: "enabled", checked: editing ? config.enabled : true });
  const chooser = eventTypeChooser(editing ? config.event_types : [], catalog);
  const formError = h("p", { class: "inline-error", id: "form-error", role: "alert", hidden: true });
  const submit = h("button", { class: "btn primary", type: "submit" }, editing ? "Save changes" : "Create endpoint");
  const cancel = h("button", { class: "btn", type: "button" }, "Cancel");
  const form = h(
    "form",
    { class: "modal-body", novalidate: true },
    field("url", "Endpoint URL", url, "An http or https URL that accepts signed POST requests."),
    h("div", { class: "field", dataset: { field: "event_types" } }, h("span", { class: "label", id: "et-label" }, "Events to send"), chooser, h("p", { class: "field-error", id: "event_types-error", role: "alert", hidden: true })),
    field("description", "Description", description),
    h("div", { class: "check field", dataset: { field: "enabled" } }, enabled, h("label", { for: "enabled" }, "Enabled"), h("p", { class: "field-error", id: "enabled-error", role: "alert", hidden: true })),
    h("div", { class: "form-actions" }, formError, cancel, submit),
  );
  const el = dialog(editing ? "Edit endpoint" : "Add an endpoint", form, { wide: true });
  cancel.addEventListener("click", () => el.close());
  url.focus();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const slot of form.querySelectorAll(".field-error")) slot.hidden = true;
    for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
    showError(formError, null);
    const body = { url: url.value.trim(), event_types: chooser.patterns(), description: description.value.trim(), enabled: enabled.checked };
    if (editing) body.id = config.id;
    submit.disabled = true;
    try {
      const resp = await api("PUT", "/webhooks/configs", body);
      el.close();
      await state.refreshEndpoints();
      if (resp.secret) showSecret(resp.secret, `Endpoint created: ${shortUrl(resp.config.url)}. This is its signing secret.`);
    } catch (err) {
      let placed = false;
      for (const v of err.violations) {
        const name = v.field.split(/[.[]/)[0];
        const slot = form.querySelector(`#${CSS.escape(name)}-error`);
        if (!slot) continue;
        slot.textContent = v.description;
        slot.hidden = false;
        const input = form.querySelector(`#${CSS.escape(name)}`) || chooser;
        input.setAttribute("aria-invalid", "true");
        if (!placed) input.focus();
        placed = true;
      }
      if (!placed) showError(formError, err);
    } finally {
      submit.disabled = false;
    }
  });
}

function toLocalInput(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

function openReplay(config) {
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

// ---------------------------------------------------------------------------
// the delivery log

function outcomePill(outcome) {
  const o = OUTCOMES[outcome] || { label: outcome || "—", tone: "muted" };
  return h("span", { class: `pill ${o.tone}` }, o.label);
}

function configLabel(id) {
  const config = state.configs.find((c) => c.id === id);
  return config ? shortUrl(config.url) : id;
}

function renderLogs() {
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

function logRow(log) {
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

function detail(label, value, { mono = false } = {}) {
  return h("div", { class: "detail" }, h("dt", {}, label), h("dd", { class: mono ? "mono" : "" }, value || "—"));
}

function openAttempt(log) {
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

// ---------------------------------------------------------------------------

function start() {
  session.onSignedOut = (message) => signOut(message);
  renderShell();
  if (!location.hash.startsWith("#/")) history.replaceState(null, "", "#/endpoints");
  route();
}

window.addEventListener("hashchange", () => {
  const fromLink = tokenFromFragment(); // a new portal link opened in this tab
  if (fromLink) {
    stopTimers();
    session.token = fromLink;
    start();
  } else if (session.token && location.hash.startsWith("#/")) route();
});

(function boot() {
  const fromLink = tokenFromFragment();
  session.token = fromLink || sessionStorage.getItem(TOKEN_KEY);
  if (!fromLink) {
    try {
      session.meta = JSON.parse(sessionStorage.getItem(META_KEY) || "{}");
    } catch {
      session.meta = {};
    }
  }
  if (session.token) start();
  else renderSignIn();
})();
