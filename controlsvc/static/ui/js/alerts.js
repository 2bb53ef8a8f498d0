// Alerts (SSE kind "alert") stay in a bar at the top until someone acknowledges them here.

import { h, clear } from "./dom.js";
import * as events from "./events.js";
import { fmtTime } from "./format.js";

const ACKED = "jaxmba.acked-alerts";
const shown = new Map(); // alert_id -> data
let bar = null;

function acked() {
  try {
    return new Set(JSON.parse(sessionStorage.getItem(ACKED) || "[]"));
  } catch {
    return new Set();
  }
}

function ack(id) {
  const set = acked();
  set.add(id);
  sessionStorage.setItem(ACKED, JSON.stringify([...set].slice(-500)));
  shown.delete(id);
  render();
}

function render() {
  clear(bar);
  for (const [id, a] of shown) {
    const severity = a.recovered ? "recovered" : a.severity || "warning";
    bar.append(h(`div.alert.alert-${severity}`, { role: "alert", dataset: { alertId: id } },
      h("strong", a.recovered ? "Recovered" : severity[0].toUpperCase() + severity.slice(1)),
      h("span.alert-text", " ",
        a.enclosure_id ? h("a", { href: `#/enclosures/${a.enclosure_id}` }, a.enclosure_id) : null,
        `: ${a.message || a.kind}`,
        a.session_id ? [" (session ", h("a", { href: `#/sessions/${a.session_id}` }, a.session_id), ")"] : null,
        h("span.muted", ` · ${fmtTime(a.recovered ? a.recovered_at : a.raised_at)}`)),
      h("button.secondary.small", { type: "button", onclick: () => ack(id) }, "Acknowledge"),
    ));
  }
}

export function initAlerts(element) {
  bar = element;
  events.on("alert", (record) => {
    const a = record.data || {};
    const id = `${a.alert_id}${a.recovered ? ":recovered" : ""}`;
    if (!a.alert_id || acked().has(id)) return;
    shown.set(id, a);
    render();
  });
}

export function resetAlerts() {
  shown.clear();
  if (bar) render();
}
