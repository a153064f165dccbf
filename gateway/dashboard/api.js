// The REST API of the gateway that serves the dashboard (same origin), the
// session's token, and the state the screens share.

export const OUTCOMES = {
  OUTCOME_DELIVERED: { label: "Delivered", tone: "ok" },
  OUTCOME_RETRY_SCHEDULED: { label: "Retrying", tone: "warn" },
  OUTCOME_FAILED: { label: "Failed", tone: "bad" },
  OUTCOME_DEAD: { label: "Dead", tone: "dead" },
};

export class ApiError extends Error {
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
