// The event picker: the catalog (GET /webhooks/event-types) grouped by
// category, with the wildcards `*` and `category.*` as choices of their own.
//
// Round trip: `patterns()` returns what the endpoint held, in its order, when
// nothing was changed; a box covered by a broader choice (reward.claimed under
// reward.*) is shown ticked and locked but its own entry is kept as held.
// `*` does not cover the operational category (`webhook.*`): the service's own
// events are received only by naming them, so that category stays choosable.
//
// Keyboard: the boxes are one group with one Tab stop; the arrow keys (and
// Home/End) move inside it, Space ticks.

import { h } from "./dom.js";

export const TEST_EVENT_TYPE = "webhook.ping"; // SendTestEvent's own type: PUT refuses it
export const OPERATIONAL_CATEGORY = "webhook"; // the service's own events: not covered by `*`

// Whether pattern `broad` covers pattern `narrow` (both subscription patterns).
export function covers(broad, narrow) {
  if (broad === narrow) return false;
  const category = narrow.split(".")[0];
  if (broad === "*") return category !== OPERATIONAL_CATEGORY;
  if (broad.endsWith(".*")) return narrow !== "*" && !narrow.endsWith(".*") && narrow.startsWith(broad.slice(0, -1));
  return false;
}

// The types an endpoint can subscribe to, grouped: [[category, [type…]]…].
export function subscribable(catalog) {
  const groups = new Map();
  for (const t of catalog) {
    if (t.name === TEST_EVENT_TYPE) continue;
    if (!groups.has(t.category)) groups.set(t.category, []);
    groups.get(t.category).push(t);
  }
  return [...groups.entries()];
}

export function eventPicker(selected, catalog) {
  const held = [...selected];
  const chosen = new Set(held);
  const groups = subscribable(catalog);
  const known = new Set(["*", ...groups.flatMap(([c, types]) => [`${c}.*`, ...types.map((t) => t.name)])]);
  const boxes = []; // in display order
  const box = (pattern, id, describedBy) => {
    const input = h("input", { type: "checkbox", id, tabindex: "-1", dataset: { pattern }, "aria-describedby": describedBy });
    input.addEventListener("change", () => {
      if (input.checked) chosen.add(pattern);
      else chosen.delete(pattern);
      sync();
    });
    boxes.push(input);
    return input;
  };
  const all = box("*", "et-all", "et-all-desc");
  const fieldsets = groups.map(([category, types]) => {
    const catBox = box(`${category}.*`, `et-cat-${category}`, `et-cat-desc-${category}`);
    const rows = types.map((t) =>
      h(
        "div",
        { class: "check" },
        box(t.name, `et-${t.name}`, `et-desc-${t.name}`),
        h("label", { for: `et-${t.name}` }, h("span", { class: "mono" }, t.name), h("span", { class: "desc", id: `et-desc-${t.name}` }, t.description)),
      ),
    );
    const note = category === OPERATIONAL_CATEGORY ? "Sent by the service about your endpoints; * does not include them." : `Every ${category} event, new ones included.`;
    return h(
      "fieldset",
      { class: "category" },
      h("legend", {}, category),
      h(
        "div",
        { class: "check strong" },
        catBox,
        h("label", { for: catBox.id }, `All ${category} events`, h("span", { class: "mono muted" }, ` ${category}.*`), h("span", { class: "desc", id: `et-cat-desc-${category}` }, note)),
      ),
      rows,
    );
  });
  const otherHeld = held.filter((p) => !known.has(p));
  const other = h("input", {
    id: "et-other",
    type: "text",
    spellcheck: "false",
    value: otherHeld.join(", "),
    placeholder: catalog.length ? "e.g. reward.*" : "e.g. reward.*, user.authenticated",
    "aria-describedby": "et-other-help event_types-error",
  });

  // A box is ticked when chosen or covered by a chosen broader pattern; covered boxes are locked.
  function sync() {
    const broad = [...chosen].filter((p) => p === "*" || p.endsWith(".*"));
    for (const input of boxes) {
      const p = input.dataset.pattern;
      const coveredBy = broad.find((b) => covers(b, p));
      input.disabled = Boolean(coveredBy);
      input.checked = chosen.has(p) || Boolean(coveredBy);
      input.title = coveredBy ? `Included in ${coveredBy}` : "";
    }
    if (!boxes.some((b) => b.tabIndex === 0 && !b.disabled)) roving(boxes.find((b) => !b.disabled));
  }
  function roving(target) {
    for (const b of boxes) b.tabIndex = b === target ? 0 : -1;
  }

  const group = h(
    "div",
    { class: "picker", role: "group", "aria-labelledby": "et-label", "aria-describedby": "et-keys" },
    h(
      "div",
      { class: "check strong all" },
      all,
      h("label", { for: "et-all" }, "All events", h("span", { class: "mono muted" }, " *"), h("span", { class: "desc", id: "et-all-desc" }, "Every published event, new types included (not the webhook.* ones).")),
    ),
    h("div", { class: "categories" }, fieldsets),
  );
  group.addEventListener("focusin", (event) => {
    if (boxes.includes(event.target)) roving(event.target);
  });
  group.addEventListener("keydown", (event) => {
    const enabled = boxes.filter((b) => !b.disabled);
    const at = enabled.indexOf(document.activeElement);
    if (at < 0) return;
    const moves = { ArrowDown: at + 1, ArrowRight: at + 1, ArrowUp: at - 1, ArrowLeft: at - 1, Home: 0, End: enabled.length - 1 };
    if (!(event.key in moves)) return;
    event.preventDefault();
    const next = enabled[Math.max(0, Math.min(enabled.length - 1, moves[event.key]))];
    roving(next);
    next.focus();
  });

  const el = h(
    "div",
    { class: "chooser", id: "event_types", "aria-describedby": "event_types-error" },
    groups.length ? group : null,
    groups.length ? h("p", { class: "help", id: "et-keys" }, "One stop for the Tab key: arrow keys move between the event types, Space ticks one.") : null,
    h("label", { for: "et-other" }, groups.length ? "Other patterns" : "Event types"),
    other,
    h("p", { class: "help", id: "et-other-help" }, "Comma-separated dotted names or category wildcards."),
  );
  sync();

  // What to send: the held patterns still chosen, in their order, then the new ones.
  el.patterns = () => {
    const typed = other.value.split(",").map((p) => p.trim()).filter(Boolean);
    const keep = (p) => (known.has(p) ? chosen.has(p) : typed.includes(p));
    const out = held.filter(keep);
    for (const input of boxes) if (chosen.has(input.dataset.pattern)) out.push(input.dataset.pattern);
    out.push(...typed);
    return [...new Set(out)];
  };
  el.focusTarget = () => boxes.find((b) => b.tabIndex === 0) || other;
  return el;
}
