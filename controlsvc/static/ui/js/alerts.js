// Alerts stay in a bar at the top until someone acknowledges them: the acknowledgement is
// stored by the service (POST /api/alerts/{id}/ack), so it holds for every user and tab, and
// the other tabs drop the alert when its "alert.acked" event arrives.

import { api, canOperate, listAll } from "./api.js";
import { h, clear } from "./dom.js";
import * as events from "./events.js";
import { fmtTime, stateWord } from "./format.js";

// On login the bar shows what nobody has acknowledged: open alerts and those of the last day.
const RECENT_MS = 24 * 3600 * 1000;
const shown = new Map(); // alert_id -> alert (GET /api/alerts item, or an "alert" event's data)
const acked = new Set(); // acknowledged while this page is open (a slow load must not revive them)
let bar = null;
let loaded = false;

function drop(id) {
  acked.add(id);
  shown.delete(id);
  render();
}

async function acknowledge(id, button, note) {
  button.disabled = true;
  note.textContent = "";
  try {
    await api("POST", `/api/alerts/${encodeURIComponent(id)}/ack`);
    drop(id);
  } catch (err) {
    button.disabled = false;
    note.textContent = ` Not acknowledged: ${err.message || err}`;
  }
}

// A session that has finished since the alert was raised says so: the link must not read as
// if it still ran (its status comes from GET /api/alerts, then from session.state events).
const FINISHED = new Set(["completed", "completed_with_failures", "canceled"]);
const sessionStatus = new Map(); // session id -> status, once it finished

function sessionLink(a) {
  const status = sessionStatus.get(a.session_id) || a.session_status;
  return FINISHED.has(status) ? `session (${stateWord(status).toLowerCase()})` : "session";
}

function render() {
  if (!bar) return;
  clear(bar);
  for (const [id, a] of shown) {
    const severity = a.recovered ? "recovered" : a.severity || "warning";
    const note = h("span.alert-note");
    const button = canOperate()
      ? h("button.secondary.small", { type: "button" }, "Acknowledge")
      : null;
    if (button) button.addEventListener("click", () => acknowledge(id, button, note));
    bar.append(h(`div.alert.alert-${severity}`, { role: "alert", dataset: { alertId: id } },
      h("strong", a.recovered ? "Recovered" : severity[0].toUpperCase() + severity.slice(1)),
      // The message is a sentence naming the enclosure and session; the links follow it.
      h("span.alert-text", " ", a.message || a.kind.replaceAll("_", " "),
        h("span.muted", ` · ${fmtTime(a.recovered ? a.recovered_at : a.raised_at)}`),
        a.enclosure_id ? [" · ", h("a", { href: `#/enclosures/${a.enclosure_id}` }, "enclosure")] : null,
        a.session_id ? [" · ", h("a", { href: `#/sessions/${a.session_id}` }, sessionLink(a))] : null,
        note),
      button,
    ));
  }
}

function take(a) {
  if (!a || !a.alert_id || acked.has(a.alert_id)) return;
  if (a.acknowledged || a.acked_at) {
    drop(a.alert_id);
    return;
  }
  shown.set(a.alert_id, a);
}

async function load() {
  loaded = true;
  try {
    const since = new Date(Date.now() - RECENT_MS).toISOString();
    const items = await listAll("/api/alerts", { acknowledged: false, since }, 500, 200);
    for (const a of items.reverse()) take(a); // oldest first: the newest ends up last
    render();
  } catch (err) {
    loaded = false; // try again when the stream is next live
    console.warn("alerts not loaded", err);
  }
}

export function initAlerts(element) {
  bar = element;
  events.on("alert", (record) => {
    take(record.data);
    render();
  });
  events.on("session.state", (record) => {
    const d = record.data || {};
    if (d.enclosure_id || !FINISHED.has(d.status)) return;
    sessionStatus.set(d.session_id, d.status);
    if ([...shown.values()].some((a) => a.session_id === d.session_id)) render();
  });
  events.on("alert.acked", (record) => {
    if (record.data?.alert_id) drop(record.data.alert_id);
  });
  events.onStatus((state) => {
    if (state === "live" && !loaded) load();
  });
}

export function resetAlerts() {
  shown.clear();
  acked.clear();
  loaded = false;
  if (bar) render();
}
