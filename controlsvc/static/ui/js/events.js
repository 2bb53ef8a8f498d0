// The one live event stream (SSE) of the page, shared by every view.
//
// Browsers cannot send headers with EventSource, so each connection uses a single-use ticket
// (POST /api/events/ticket). When the stream drops, EventSource would retry with the spent
// ticket: we close it instead, fetch a new ticket and reconnect with the last event id seen,
// so nothing is lost (docs/events.md).

import { api } from "./api.js";

const KINDS = [
  "enclosure.state", "enclosure.status", "command.updated",
  "session.progress", "session.state", "alert", "alert.acked",
];
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 15000;

const handlers = new Map(); // kind -> Set(fn)
const statusListeners = new Set();
let source = null;
let lastId = null;
let running = false;
let retryMs = RETRY_MIN_MS;
let retryTimer = null;

function setStatus(state) {
  statusListeners.forEach((fn) => fn(state));
}

/** Subscribe to one kind ("*" for all); returns the unsubscribe function. */
export function on(kind, fn) {
  if (!handlers.has(kind)) handlers.set(kind, new Set());
  handlers.get(kind).add(fn);
  return () => handlers.get(kind).delete(fn);
}

export function onStatus(fn) {
  statusListeners.add(fn);
  return () => statusListeners.delete(fn);
}

function dispatch(kind, message) {
  let record;
  try {
    record = JSON.parse(message.data);
  } catch {
    return;
  }
  if (message.lastEventId) lastId = message.lastEventId;
  for (const key of [kind, "*"]) {
    for (const fn of handlers.get(key) || []) {
      try {
        fn(record);
      } catch (err) {
        console.warn("event handler failed", err);
      }
    }
  }
}

async function connect() {
  if (!running) return;
  clearTimeout(retryTimer);
  setStatus("connecting");
  let ticket;
  try {
    ({ ticket } = await api("POST", "/api/events/ticket"));
  } catch {
    scheduleRetry();
    return;
  }
  if (!running) return;
  const params = new URLSearchParams({ ticket });
  if (lastId) params.set("last_event_id", lastId);
  const es = new EventSource(`/api/events?${params}`);
  source = es;
  es.onopen = () => {
    retryMs = RETRY_MIN_MS;
    setStatus("live");
  };
  es.onerror = () => {
    if (source !== es) return;
    es.close(); // its ticket is spent: never let EventSource retry with it
    source = null;
    scheduleRetry();
  };
  es.addEventListener("reconnect", () => {
    if (source !== es) return;
    es.close();
    source = null;
    retryMs = RETRY_MIN_MS;
    connect();
  });
  for (const kind of KINDS) es.addEventListener(kind, (m) => dispatch(kind, m));
}

function scheduleRetry() {
  if (!running) return;
  setStatus("reconnecting");
  retryTimer = setTimeout(connect, retryMs);
  retryMs = Math.min(RETRY_MAX_MS, retryMs * 2);
}

export function start() {
  if (running) return;
  running = true;
  connect();
}

export function stop() {
  running = false;
  clearTimeout(retryTimer);
  if (source) source.close();
  source = null;
  lastId = null;
  setStatus("off");
}
