// The REST API of the gateway that serves the dashboard (same origin), the
// session's token, and the state the screens share.

// Every value of the API's Outcome enum (but UNSPECIFIED), in an admin's words.
export const OUTCOMES = {
  OUTCOME_DELIVERED: { label: "Delivered", tone: "ok", help: "The endpoint answered 2xx." },
  OUTCOME_RETRY_SCHEDULED: { label: "Retrying", tone: "warn", help: "Failed; another attempt is scheduled." },
  OUTCOME_FAILED: { label: "Failed", tone: "bad", help: "Failed for good (e.g. HTTP 400); no retry." },
  OUTCOME_DEAD: { label: "Dead", tone: "dead", help: "Failed, and every retry was used up." },
  OUTCOME_CANCELLED: { label: "Cancelled", tone: "muted", help: "Not sent: the endpoint was deleted while it waited." },
};

// The API's field names in an admin's words, for messages that name a field.
const FIELD_LABELS = {
  url: "URL",
  event_types: "Events",
  event_type: "Event type",
  event_id: "Event id",
  config_id: "Endpoint",
  description: "Description",
  headers: "Custom headers",
  secret: "Secret",
  since: "From",
  until: "Until",
  outcome: "Outcome",
  outcomes: "Which deliveries",
  status_class: "Status",
  data: "Data",
  page_size: "Page size",
  page_token: "Page",
};

export function fieldLabel(field) {
  const name = String(field || "").split(/[.[]/)[0];
  return FIELD_LABELS[name] || name.replace(/_/g, " ");
}

const UNREACHABLE = "The webhooks API cannot be reached. Check your connection, then try again.";

// What an admin reads for an error: never an RPC name ("invalid
// ListDeliveryLogs request: …") nor a proxy's own wording.
export function adminMessage(status, body) {
  const raw = String(body.message || "");
  if (status === 503 && /database/i.test(raw)) return "The webhooks service cannot reach its database just now. Try again shortly.";
  if (status === 0 || status === 502 || status === 503 || status === 504) return UNREACHABLE; // the gateway's upstream is down
  if (status === 401) return raw || "Your session has ended. Sign in again.";
  if (status === 403) return canWrite() ? raw.replace(/^permission denied:?\s*/i, "Not allowed: ") || "Not allowed." : "This session may only look: it cannot make changes.";
  if (status === 429) return `Too many requests just now. ${raw.replace(/^.*?(retry|try again)/i, "Try again") || "Try again in a moment."}`;
  if (status >= 500) return `Something went wrong on the service's side${/incident (\w+)/.test(raw) ? ` (incident ${raw.match(/incident (\w+)/)[1]})` : ""}. Try again; if it persists, tell your platform.`;
  const violations = violationsOf(body);
  if (violations.length) return violations.map((v) => `${fieldLabel(v.field)}: ${v.description}`).join(" ");
  let text = raw.replace(/^invalid [A-Z][A-Za-z]+ request:?\s*/, "").replace(/\b[A-Z][a-z]+(?:[A-Z][a-z]+)+\b/g, "this request");
  text = text || `The request was refused (HTTP ${status}).`;
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function violationsOf(body) {
  const out = [];
  for (const detail of body.details || []) for (const v of detail.field_violations || []) out.push(v);
  return out;
}

export class ApiError extends Error {
  constructor(status, body) {
    super(adminMessage(status, body));
    this.status = status;
    this.code = body.code;
    this.unreachable = status === 0 || status === 502 || status === 503 || status === 504;
    this.violations = violationsOf(body);
  }
}

export const session = {
  token: null,
  meta: {}, // a portal link's expires_at and scopes; unknown for a pasted key
  onSignedOut: null,
};

// A portal session without webhooks:write: the changing controls are not shown.
export function canWrite() {
  const scopes = session.meta.scopes;
  return !scopes || scopes.includes("webhooks:write");
}

export async function api(method, path, body) {
  const token = session.token;
  const init = { method, headers: { authorization: `Bearer ${token}` } };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch {
    throw new ApiError(0, {});
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
    // Sign out only the session this request was made with: a reply that comes
    // back after the session already ended (expired, signed out) keeps the
    // message that ending gave.
    if (resp.status === 401 && token && session.token === token && session.onSignedOut) {
      session.onSignedOut(err.message);
    }
    throw err;
  }
  return data;
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value) q.set(key, value);
  const text = q.toString();
  return text ? `?${text}` : "";
}

export const state = {
  view: "endpoints",
  configs: [],
  configsLoaded: false,
  catalog: null, // loadCatalog's list, once read
  logs: [],
  nextPageToken: "",
  filters: { config_id: "", event_type: "", outcome: "", event_id: "" },
  live: true,
  lastUpdated: null,
  timers: [],
};

export function stopTimers() {
  for (const t of state.timers) clearInterval(t);
  state.timers = [];
}

export async function loadConfigs() {
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

// The event catalog, [{name, category, description, schema, example}]. When it
// cannot be read, [] (patterns are then typed in), or the error with `strict`.
export async function loadCatalog({ strict = false } = {}) {
  if (state.catalog !== null) return state.catalog;
  try {
    const data = await api("GET", "/webhooks/event-types");
    state.catalog = (data.event_types || []).map((t) => ({
      name: t.name,
      category: t.category || t.name.split(".")[0],
      description: t.description || "",
      schema: t.schema || {},
      example: t.example || {},
    }));
  } catch (err) {
    if (err.status === 401 || strict) throw err;
    return [];
  }
  return state.catalog;
}
