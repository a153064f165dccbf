// Small DOM helpers shared by every screen: elements, icons, times, fields,
// dialogs, states. Untrusted text is only ever set with textContent, never
// parsed as HTML.

import { OUTCOMES } from "./api.js";

export function h(tag, attrs = {}, ...children) {
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

export function icon(name) {
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
    trash: "M4 7h16M10 11v6M14 11v6M6 7l1 13h10l1-13M9 7V4h6v3",
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

export function relative(iso) {
  if (!iso) return "never";
  const seconds = (Date.parse(iso) - Date.now()) / 1000;
  const abs = Math.abs(seconds);
  const fmt = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  if (abs < 45) return seconds < 0 ? "just now" : "in a few seconds";
  if (abs < 3600) return fmt.format(Math.round(seconds / 60), "minute");
  if (abs < 86400) return fmt.format(Math.round(seconds / 3600), "hour");
  return fmt.format(Math.round(seconds / 86400), "day");
}

export function absolute(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

export function time(iso) {
  return h("time", { datetime: iso || "", title: absolute(iso) }, relative(iso));
}

export function pretty(text) {
  if (!text) return "";
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

export function shortUrl(url) {
  try {
    const u = new URL(url);
    return u.host + (u.pathname === "/" ? "" : u.pathname);
  } catch {
    return url;
  }
}

export function showError(slot, err) {
  slot.textContent = err ? err.message || String(err) : "";
  slot.hidden = !err;
}

export function note(slot, text, tone = "ok") {
  slot.textContent = text;
  slot.className = `inline-note ${tone}`;
  slot.hidden = !text;
  slot.dataset.at = String(Date.now());
}

export const NOTE_KEEP_MS = 20000; // a success note stays this long; an error until the next action

// A modal dialog. `focusTitle`: it opens at its top, focus on its heading.
export function dialog(title, body, { wide = false, onClose, focusTitle = false } = {}) {
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
  if (focusTitle) {
    const heading = el.querySelector("#dialog-title");
    heading.tabIndex = -1;
    heading.focus();
    el.scrollTop = 0;
  }
  return el;
}

// Resolves true when the admin confirms. `danger`: the confirming button is red.
export function confirmDialog(title, text, confirmLabel, { danger = false } = {}) {
  return new Promise((resolve) => {
    let answer = false;
    const yes = h("button", { class: danger ? "btn danger" : "btn primary", type: "button" }, confirmLabel);
    const no = h("button", { class: "btn", type: "button" }, "Cancel");
    const paragraphs = (Array.isArray(text) ? text : [text]).map((t) => h("p", {}, t));
    const el = dialog(title, h("div", { class: "modal-body" }, paragraphs, h("div", { class: "form-actions" }, no, yes)), {
      onClose: () => resolve(answer),
    });
    yes.addEventListener("click", () => {
      answer = true;
      el.close();
    });
    no.addEventListener("click", () => el.close());
    (danger ? no : yes).focus();
  });
}


export function field(id, label, input, help) {
  input.id = id;
  input.name = id;
  const error = h("p", { class: "field-error", id: `${id}-error`, role: "alert", hidden: true });
  input.setAttribute("aria-describedby", [help ? `${id}-help` : null, `${id}-error`].filter(Boolean).join(" "));
  return h("div", { class: "field", dataset: { field: id } }, h("label", { for: id }, label), input, help ? h("p", { class: "help", id: `${id}-help` }, help) : null, error);
}

export function toLocalInput(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

// A screen's failure: what went wrong in words, and a way to try again.
export function renderFailure(err, retry) {
  const again = retry ? h("button", { class: "btn", type: "button", onclick: retry }, icon("refresh"), h("span", {}, "Try again")) : null;
  return h(
    "div",
    { class: "failure", role: "alert" },
    h("h2", {}, err.unreachable ? "The API cannot be reached" : "This could not be loaded"),
    h("p", {}, err.message),
    again,
  );
}

// Shown while a screen's first data is on its way.
export function loading(text) {
  return h("p", { class: "loading", role: "status" }, h("span", { class: "spinner", "aria-hidden": "true" }), text);
}

export function outcomePill(outcome) {
  const o = OUTCOMES[outcome] || { label: "Unknown", tone: "muted" };
  return h("span", { class: `pill ${o.tone}`, title: o.help || "" }, o.label);
}
