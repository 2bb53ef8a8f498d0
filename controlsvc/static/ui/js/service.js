// The banner saying the bridge is down. Nothing else in the UI would show it: a dead bridge
// just stops every update (states, command results, session progress), so /api/health is
// asked every HEALTH_POLL_MS while logged in, and at once whenever the live feed reconnects.

import { h, clear } from "./dom.js";
import { fmtTime } from "./format.js";

const HEALTH_POLL_MS = 15000; // the bridge is judged down 15 s after its last heartbeat
let banner = null;
let timer = null;

function show(bridge) {
  if (!banner) return;
  if (!bridge || bridge.ok) {
    banner.hidden = true;
    clear(banner);
    return;
  }
  const since = bridge.since ? ` since ${fmtTime(bridge.since)}` : "";
  clear(banner,
    h("strong", "Bridge down"),
    h("span.alert-text",
      ` The service's bridge is not running${since} (${bridge.detail || "no heartbeat"}):`
      + " enclosure states, command results and session progress are not being updated."));
  banner.hidden = false;
}

export async function checkHealth() {
  try {
    const response = await fetch("/api/health", { headers: { Accept: "application/json" } });
    const body = await response.json();
    show(body.bridge);
  } catch (err) {
    console.warn("health check failed", err);
  }
}

export function initServiceBanner(element) {
  banner = element;
}

export function startHealthChecks() {
  if (timer !== null) return;
  checkHealth();
  timer = setInterval(checkHealth, HEALTH_POLL_MS);
}

export function stopHealthChecks() {
  if (timer !== null) clearInterval(timer);
  timer = null;
  show(null);
}
