// The fleet: every enclosure as a card, filtered by state and text, updated live from SSE.

import { api, listAll } from "../api.js";
import { h, clear, progressBar } from "../dom.js";
import * as events from "../events.js";
import { ENCLOSURE_STATES, fmtDuration, fmtNumber, fmtTime, health, stateWord, tone } from "../format.js";

export function dashboardPage(main) {
  const enclosures = new Map(); // id -> EnclosureOut (state and status kept current)
  const sessions = new Map(); // running/scheduled session id -> summary (for its duration)
  const progress = new Map(); // "session/eid" -> session.progress data
  const filter = { state: "", q: "" };

  const stateSelect = h("select", { id: "state-filter", onchange: () => { filter.state = stateSelect.value; render(); } });
  const search = h("input", {
    id: "search", type: "search", placeholder: "id, name or location",
    oninput: () => { filter.q = search.value.trim().toLowerCase(); render(); },
  });
  const summary = h("p.summary", { role: "status" });
  const grid = h("div.cards", { id: "fleet" });
  clear(main,
    h("div.page-head", h("h1", "Fleet"), summary),
    h("div.toolbar", { role: "search" },
      h("label", { for: "state-filter" }, "State"), stateSelect,
      h("label", { for: "search" }, "Search"), search),
    grid);

  function counts() {
    const c = Object.fromEntries(ENCLOSURE_STATES.map((s) => [s, 0]));
    for (const e of enclosures.values()) c[e.state] = (c[e.state] || 0) + 1;
    return c;
  }

  function renderFilter(c) {
    const chosen = filter.state;
    clear(stateSelect,
      h("option", { value: "" }, `All (${enclosures.size})`),
      ENCLOSURE_STATES.map((s) => h("option", { value: s, selected: s === chosen }, `${stateWord(s)} (${c[s] || 0})`)));
    stateSelect.value = chosen;
  }

  function sessionLine(enc, hl) {
    const rec = hl?.recording;
    if (!rec) return h("p.muted.session-line", "No recording");
    const s = sessions.get(rec.session_id);
    const p = progress.get(`${rec.session_id}/${enc.id}`);
    const recorded = Math.max(rec.recorded_s || 0, p?.recorded_s || 0);
    const of = s ? ` of ${fmtDuration(s.duration_s)}` : "";
    return h("div.session-line",
      h("p", "Session ", h("a", { href: `#/sessions/${encodeURIComponent(rec.session_id)}` }, s?.name || rec.session_id)),
      s ? progressBar(recorded / s.duration_s, `session progress of ${enc.id}`) : null,
      h("p.small", { dataset: { testid: "recorded" } }, `${fmtDuration(recorded)} recorded${of}`));
  }

  function card(enc) {
    const hl = health(enc.status);
    const t = tone(enc.state);
    return h(`article.card.tone-${t}`, { dataset: { enclosure: enc.id, state: enc.state } },
      h("div.card-head",
        h("h2", h("a", { href: `#/enclosures/${enc.id}` }, enc.name || enc.id)),
        h(`span.badge.tone-${t}`, { dataset: { testid: "state" } }, stateWord(enc.state))),
      enc.name && enc.name !== enc.id || enc.location
        ? h("p.muted.small", enc.name !== enc.id ? enc.id : "", enc.location ? ` · ${enc.location}` : "") : null,
      hl ? h("dl.facts",
        h("dt", "Disk free"), h(`dd.tone-text-${hl.diskTone}`, hl.diskPct === null ? "–" : `${fmtNumber(hl.diskPct, 0)} %`),
        h("dt", "Load"), h("dd", fmtNumber(hl.load, 2)),
        h("dt", "Clock"), h(`dd.tone-text-${hl.clockTone}`, hl.clockWord),
        h("dt", "Camera"), h("dd", hl.cameraConnected ? `${fmtNumber(hl.fps, 1)} fps` : "not connected"),
        hl.recording ? [h("dt", "Frames"), h("dd", { dataset: { testid: "frames" } }, fmtNumber(hl.frames))] : null,
      ) : h("p.muted", "No status reported yet"),
      hl?.lastError ? h("p.error-text", hl.lastError) : null,
      sessionLine(enc, hl),
      h("p.muted.small", `Last seen ${fmtTime(enc.last_seen_at)}`));
  }

  function render() {
    const c = counts();
    renderFilter(c);
    summary.textContent = `${enclosures.size} enclosures: ` +
      ENCLOSURE_STATES.filter((s) => c[s]).map((s) => `${c[s]} ${stateWord(s).toLowerCase()}`).join(", ");
    const shown = [...enclosures.values()]
      .filter((e) => !filter.state || e.state === filter.state)
      .filter((e) => !filter.q || [e.id, e.name, e.location].some((v) => (v || "").toLowerCase().includes(filter.q)))
      .sort((a, b) => a.id.localeCompare(b.id));
    clear(grid, shown.length ? shown.map(card)
      : h("p.muted", enclosures.size ? "No enclosure matches the filter." : "No enclosures are registered yet."));
  }

  const timers = new Map();
  function soon(fn) { // coalesce bursts of events into one render (or reload)
    if (timers.has(fn)) return;
    timers.set(fn, setTimeout(() => { timers.delete(fn); fn(); }, 150));
  }

  async function loadSessions() {
    const running = await Promise.all(["running", "scheduled"].map((status) =>
      api("GET", "/api/sessions", undefined, { query: { status, limit: 500 } }).catch(() => ({ items: [] }))));
    sessions.clear();
    for (const s of running.flatMap((p) => p.items)) sessions.set(s.id, s);
  }

  async function load() {
    try {
      const [items] = await Promise.all([listAll("/api/enclosures"), loadSessions()]);
      enclosures.clear();
      for (const e of items) enclosures.set(e.id, e);
      render();
    } catch (err) {
      clear(grid, h("p.error-text", { role: "alert" }, `Could not load the fleet: ${err.message}`));
    }
  }

  const off = [
    events.on("enclosure.state", ({ data }) => {
      const enc = enclosures.get(data.enclosure_id);
      if (!enc) { soon(load); return; }
      enc.state = data.state;
      enc.state_changed_at = data.at;
      soon(render);
    }),
    events.on("enclosure.status", ({ data }) => {
      const enc = enclosures.get(data.enclosure_id);
      if (!enc) { soon(load); return; }
      enc.state = data.state;
      enc.status = data.status;
      enc.last_seen_at = data.at;
      soon(render);
    }),
    events.on("session.progress", ({ data }) => {
      if (data.enclosure_id) progress.set(`${data.session_id}/${data.enclosure_id}`, data);
      soon(render);
    }),
    events.on("session.state", () => { loadSessions().then(render); }),
  ];
  load();
  return () => { off.forEach((f) => f()); timers.forEach((t) => clearTimeout(t)); };
}
