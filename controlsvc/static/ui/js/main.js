// Start-up, the hash router and the page frame (navigation, live indicator, alerts).

import { auth, currentUser, hasRole, logout, onAuthChange } from "./api.js";
import { h, clear } from "./dom.js";
import * as events from "./events.js";
import { initAlerts, resetAlerts } from "./alerts.js";
import { checkHealth, initServiceBanner, startHealthChecks, stopHealthChecks } from "./service.js";
import { loginPage, requestResetPage, linkPage } from "./pages/auth.js";
import { dashboardPage } from "./pages/dashboard.js";
import { enclosurePage } from "./pages/enclosure.js";
import { sessionsPage, sessionNewPage, sessionPage } from "./pages/sessions.js";
import { usersPage } from "./pages/users.js";

const main = document.getElementById("main");
let cleanup = null;
let flash = null; // a message for the next page (e.g. "logged out")

const ROUTES = [
  [/^\/?$/, dashboardPage, "dashboard"],
  [/^\/enclosures\/([a-z0-9-]+)$/, enclosurePage, "dashboard"],
  [/^\/sessions$/, sessionsPage, "sessions"],
  [/^\/sessions\/new(?:\/(like|template)\/([A-Za-z0-9._-]+))?$/, sessionNewPage, "sessions"],
  [/^\/sessions\/([A-Za-z0-9._-]+)$/, sessionPage, "sessions"],
  [/^\/users$/, usersPage, "users"],
];

function emailedLink() {
  const m = location.pathname.match(/^\/(invite|reset-password)\/([^/]+)$/);
  return m ? { kind: m[1], token: decodeURIComponent(m[2]) } : null;
}

function frame(loggedIn) {
  document.getElementById("topbar").hidden = !loggedIn;
  const user = currentUser();
  document.getElementById("who").textContent = user ? `${user.email} (${user.role})` : "";
  for (const el of document.querySelectorAll("[data-admin]")) el.hidden = !hasRole("admin");
}

async function route() {
  if (cleanup) {
    try { cleanup(); } catch (err) { console.warn(err); }
    cleanup = null;
  }
  const link = emailedLink();
  const hash = decodeURIComponent(location.hash.replace(/^#/, "")) || "/";
  main.replaceChildren();
  if (link && !auth()) {
    frame(false);
    cleanup = linkPage(main, link);
    return;
  }
  if (!auth()) {
    frame(false);
    cleanup = hash === "/forgot" ? requestResetPage(main) : loginPage(main, flash);
    flash = null;
    return;
  }
  if (link) history.replaceState(null, "", `/${location.hash || "#/"}`);
  frame(true);
  events.start();
  startHealthChecks();
  for (const [pattern, page, nav] of ROUTES) {
    const m = hash.match(pattern);
    if (!m) continue;
    for (const a of document.querySelectorAll("[data-nav]")) {
      if (a.dataset.nav === nav) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    cleanup = page(main, ...m.slice(1)) || null;
    return;
  }
  clear(main, h("h1", "Not found"), h("p", "There is no page at this address. ",
    h("a", { href: "#/" }, "Go to the fleet")));
}

export function focusHeading() {
  const heading = main.querySelector("h1");
  if (heading) {
    heading.tabIndex = -1;
    heading.focus({ preventScroll: true });
  }
}

onAuthChange((loggedIn, reason) => {
  if (loggedIn) {
    if (["#/login", "#/forgot"].includes(location.hash)) location.hash = "#/";
    else route();
    return;
  }
  {
    events.stop();
    stopHealthChecks();
    resetAlerts();
    flash = reason || null;
    if (location.hash !== "#/login") location.hash = "#/login";
    else route();
  }
});

events.onStatus((state) => {
  const el = document.getElementById("live-indicator");
  const words = { live: "live", connecting: "connecting…", reconnecting: "reconnecting…", off: "offline" };
  el.textContent = words[state] || state;
  el.dataset.state = state;
  if (state === "live") checkHealth(); // back after an outage: is the bridge too?
});

document.getElementById("logout").addEventListener("click", () => logout());
window.addEventListener("hashchange", route);
initAlerts(document.getElementById("alerts"));
initServiceBanner(document.getElementById("service-banner"));
route();
