// The webhooks dashboard: one page, plain JavaScript, no build step, no
// dependency. It talks only to the public REST API of the gateway that serves
// it (same origin), with the bearer token of the session:
//   * a portal session (`#token=wpt_…` in the link CreatePortalSession made;
//     read from the fragment, then removed from the address bar), or
//   * an API key pasted on the sign-in screen.
// The token is kept in sessionStorage (this tab only, gone when it closes),
// never in localStorage or a cookie. Untrusted text (URLs, bodies, errors) is
// only ever set with textContent, never parsed as HTML.

import { api, canWrite, session, state, stopTimers } from "./api.js";
import { absolute, h, icon, relative, showError } from "./dom.js";
import { renderCatalog } from "./catalog.js";
import { renderEndpoints } from "./endpoints.js";
import { renderEvent } from "./event.js";
import { renderLogs } from "./logs.js";

const TOKEN_KEY = "webhooks.dashboard.token";
const META_KEY = "webhooks.dashboard.session"; // {expires_at, scopes} of a portal session

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
    Object.entries(VIEWS)
      .filter(([, v]) => v.nav)
      .map(([view, v]) => navLink(view, v.title)),
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
      h("button", { class: "btn ghost", type: "button", "aria-label": "Sign out", onclick: () => signOut() }, icon("out"), h("span", {}, "Sign out")),
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

// The screens: `#/<view>?<params>`; `nav` ones have a tab.
const VIEWS = {
  endpoints: { title: "Endpoints", nav: true, render: () => renderEndpoints() },
  logs: { title: "Delivery log", nav: true, render: (params) => renderLogs(params) },
  event: { title: "Events", nav: true, render: (params) => renderEvent(params) },
  catalog: { title: "Event types", nav: true, render: (params) => renderCatalog(params) },
};

function route() {
  const name = (location.hash.match(/^#\/(\w+)/) || [])[1];
  state.view = name in VIEWS ? name : "endpoints";
  const view = VIEWS[state.view];
  for (const link of document.querySelectorAll(".tab")) {
    if (link.dataset.view === state.view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  stopTimers();
  document.title = `${view.title} · Webhooks`;
  view.render(params);
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
