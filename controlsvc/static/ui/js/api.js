// The REST client: bearer tokens in sessionStorage, one refresh on 401, problem+json errors.

const STORE = "jaxmba.auth";
let refreshing = null;
const listeners = new Set();

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
    this.errors = (problem && problem.errors) || [];
  }
}

export function auth() {
  try {
    return JSON.parse(sessionStorage.getItem(STORE) || "null");
  } catch {
    return null;
  }
}

export function currentUser() {
  return auth()?.user || null;
}

export function hasRole(...roles) {
  const user = currentUser();
  return !!user && roles.includes(user.role);
}

export function canOperate() {
  return hasRole("admin", "operator");
}

/** Called with true on login and false on logout or an expired session. */
export function onAuthChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function storeTokens(body) {
  sessionStorage.setItem(STORE, JSON.stringify({
    access: body.access_token, refresh: body.refresh_token, user: body.user,
  }));
  listeners.forEach((fn) => fn(true));
}

export function forget(reason) {
  sessionStorage.removeItem(STORE);
  listeners.forEach((fn) => fn(false, reason));
}

async function parse(response) {
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  if (type.includes("json")) return response.json();
  return response.text();
}

async function send(method, path, body, token) {
  const headers = { Accept: "application/json, application/problem+json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  return fetch(path, init);
}

async function refreshTokens() {
  const current = auth();
  if (!current?.refresh) return false;
  if (!refreshing) {
    refreshing = (async () => {
      const response = await send("POST", "/api/auth/refresh", undefined, current.refresh);
      if (!response.ok) return false;
      const body = await response.json();
      sessionStorage.setItem(STORE, JSON.stringify({
        access: body.access_token, refresh: body.refresh_token, user: body.user,
      }));
      return true;
    })().finally(() => { refreshing = null; });
  }
  return refreshing;
}

/** api("GET", "/api/enclosures", undefined, {query}) -> parsed body, or throws ApiError. */
export async function api(method, path, body, { query, anonymous = false } = {}) {
  if (query) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v !== undefined && v !== null && v !== "") params.set(k, String(v));
    }
    const qs = params.toString();
    if (qs) path += `?${qs}`;
  }
  let response = await send(method, path, body, anonymous ? null : auth()?.access);
  if (response.status === 401 && !anonymous && auth()) {
    if (await refreshTokens()) {
      response = await send(method, path, body, auth()?.access);
    }
    if (response.status === 401) {
      forget("Your session has ended; please log in again.");
    }
  }
  const parsed = await parse(response);
  if (!response.ok) throw new ApiError(response.status, typeof parsed === "object" ? parsed : null);
  return parsed;
}

/** Every item of a paginated list (follows next_cursor). */
export async function listAll(path, query = {}, max = 5000, pageSize = 500) {
  const items = [];
  let cursor;
  do {
    const page = await api("GET", path, undefined, {
      query: { ...query, limit: pageSize, cursor },
    });
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return items;
}

export async function login(email, password) {
  const body = await api("POST", "/api/auth/login", { email, password }, { anonymous: true });
  storeTokens(body);
  return body.user;
}

export async function logout() {
  const current = auth();
  if (current?.access) {
    try {
      await send("POST", "/api/auth/logout", { refresh_token: current.refresh }, current.access);
    } catch {
      // logging out locally is what matters
    }
  }
  forget("You are logged out.");
}
