// The fleet: enclosures grouped by room and rack, as cards or as a table, filtered by state
// and text, updated live from SSE one card at a time, with bulk commands on a selection.
//
// At fleet scale (thousands of enclosures) only what is near the screen is built: each group is
// cut into chunks that stay empty placeholders of about their size until an
// IntersectionObserver sees them come near the viewport. A live event redraws the one card or
// row of its enclosure (if it is built); the page is laid out again only when the filter, the
// view or the set of enclosures changes.

import { api, canOperate } from "../api.js";
import { h, clear, progressBar } from "../dom.js";
import { confirmDialog } from "../dialog.js";
import * as events from "../events.js";
import { BULK_KINDS, bulkResults, resultTone, resultWord } from "../bulk.js";
import {
  CLOCK_SKEW_S, applyProgress, dropEndedSessions, fromEnclosure, groupFleet, loadFleet, matches, statusFields,
} from "../fleet.js";
import { ENCLOSURE_STATES, fmtDuration, fmtNumber, fmtTime, stateWord, tone } from "../format.js";

const VIEW_KEY = "jaxmba.fleet-view";
const CARD_CHUNK = 24; // cards built together
const ROW_CHUNK = 60; // table rows built together
const NEAR = "800px 0px"; // how close to the viewport a chunk is built

function storedView() {
  try {
    return localStorage.getItem(VIEW_KEY) === "table" ? "table" : "cards";
  } catch {
    return "cards";
  }
}

function clockFacts(offset) {
  if (offset === null || offset === undefined) return { word: "unknown", tone: "none" };
  const ms = `${fmtNumber(offset * 1000, 0)} ms`;
  if (Math.abs(offset) > CLOCK_SKEW_S) return { word: `skewed ${fmtNumber(offset, 2)} s`, tone: "bad" };
  return { word: `within tolerance (${ms})`, tone: "ok" };
}

function diskTone(pct) {
  if (pct === null || pct === undefined) return "none";
  return pct < 10 ? "bad" : pct < 20 ? "warn" : "ok";
}

const pct = (v) => (v === null || v === undefined ? "–" : `${fmtNumber(v, 0)} %`);

export function dashboardPage(main) {
  const records = new Map(); // id -> summary record, kept current by events
  const sessions = new Map(); // running/scheduled session id -> summary (name, duration)
  const filter = { state: "", q: "" };
  const selected = new Set();
  const operator = canOperate();
  let view = storedView();
  let nodes = new Map(); // id -> its built card or row
  let shown = new Set(); // ids laid out under the current filter
  let chunkOf = new Map(); // placeholder element -> ids to build in it
  let groupBoxes = []; // [{box, ids}] group selection checkboxes
  let observer = null;
  let cardHeight = 0; // measured from the first card built (estimates placeholders)

  // -- the frame: heading, state buttons, search, view toggle, bulk bar ---------------------
  const summary = h("p.summary", { role: "status" });
  const stateButtons = new Map(); // "" (all) or state -> button
  const stateBar = h("div.state-filter", { role: "group", "aria-label": "Filter by state" },
    ["", ...ENCLOSURE_STATES].map((s) => {
      const b = h(`button.chip${s ? `.tone-${tone(s)}` : ""}`, {
        type: "button", dataset: { state: s || "all" }, "aria-pressed": String(s === filter.state),
        onclick: () => setState(filter.state === s ? "" : s),
      });
      stateButtons.set(s, b);
      return b;
    }));
  const search = h("input", {
    id: "search", type: "search", placeholder: "id, name or location",
    oninput: () => { filter.q = search.value.trim().toLowerCase(); soon(layout, 120); },
  });
  const viewButtons = ["cards", "table"].map((v) => h("button.secondary.small", {
    type: "button", dataset: { view: v }, "aria-pressed": String(v === view),
    onclick: () => setView(v),
  }, v === "cards" ? "Cards" : "Table"));
  const fleet = h("div.fleet", { id: "fleet", dataset: { view } });

  const selectedCount = h("span.selected-count", { dataset: { testid: "selected-count" } });
  const bulkStatus = h("p.bulk-status.small", { role: "status", dataset: { testid: "bulk-summary" } });
  const actionButtons = [
    h("button.small", { type: "button", onclick: () => bulkSend("ping") }, "Ping"),
    h("button.small.secondary", { type: "button", onclick: () => bulkSend("restart_agent") }, "Restart agents"),
    h("button.small.secondary", { type: "button", onclick: startSessionDialog }, "Start session…"),
  ];
  const bulkBar = operator ? h("div.bulkbar", { role: "region", "aria-label": "Bulk actions" },
    h("div.bulk-select",
      selectedCount,
      h("button.small.secondary", { type: "button", onclick: selectShown }, "Select shown"),
      h("button.small.secondary", { type: "button", onclick: () => { selected.clear(); selectionChanged(); } }, "Clear")),
    h("div.bulk-actions", actionButtons),
    bulkStatus) : null;

  clear(main,
    h("div.page-head", h("h1", "Fleet"), summary),
    h("div.toolbar", { role: "search" },
      stateBar,
      h("span.search-field", h("label", { for: "search" }, "Search"), search),
      h("span.view-toggle", { role: "group", "aria-label": "View" }, viewButtons)),
    bulkBar,
    fleet);

  // -- one enclosure as a card or a table row -----------------------------------------------
  const bulk = operator ? bulkResults({ onResult: redraw, onSummary: () => soon(renderBulkStatus, 100) }) : null;

  function selectBox(r) {
    if (!operator) return null;
    return h("input.select", {
      type: "checkbox", checked: selected.has(r.id), dataset: { select: r.id },
      "aria-label": `Select ${r.id}`, onchange: (e) => toggle(r.id, e.target.checked),
    });
  }

  function resultChip(r) {
    const res = bulk?.results.get(r.id);
    if (!res) return null;
    return h(`span.badge.result.tone-${resultTone(res)}`, {
      dataset: { testid: "bulk-result", result: res.state }, title: res.detail || "",
    }, `${BULK_KINDS[res.kind] || res.kind}: ${resultWord(res)}`);
  }

  function sessionLine(r) {
    if (!r.session_id) return h("p.muted.session-line", "No recording");
    const s = sessions.get(r.session_id);
    const of = s ? ` of ${fmtDuration(s.duration_s)}` : "";
    return h("div.session-line",
      h("p", "Session ", h("a", { href: `#/sessions/${encodeURIComponent(r.session_id)}` }, s?.name || r.session_id)),
      s ? progressBar((r.recorded_s || 0) / s.duration_s, `session progress of ${r.id}`) : null,
      h("p.small", { dataset: { testid: "recorded" } }, `${fmtDuration(r.recorded_s || 0)} recorded${of}`));
  }

  function card(r) {
    const t = tone(r.state);
    const clock = clockFacts(r.clock_offset_s);
    const seen = r.last_seen_at !== null && r.last_seen_at !== undefined;
    return h(`article.card.tone-${t}`, { dataset: { enclosure: r.id, state: r.state } },
      h("div.card-head",
        h("span.card-title", selectBox(r), h("h2", h("a", { href: `#/enclosures/${r.id}` }, r.name || r.id))),
        h(`span.badge.tone-${t}`, { dataset: { testid: "state" } }, stateWord(r.state))),
      r.name && r.name !== r.id || r.location
        ? h("p.muted.small", [r.name && r.name !== r.id ? r.id : "", r.location || ""].filter(Boolean).join(" · ")) : null,
      seen ? h("dl.facts",
        h("dt", "Disk free"), h(`dd.tone-text-${diskTone(r.disk_free_pct)}`, pct(r.disk_free_pct)),
        h("dt", "Clock"), h(`dd.tone-text-${clock.tone}`, clock.word),
        h("dt", "Camera"), h("dd", r.fps === null || r.fps === undefined ? "not connected" : `${fmtNumber(r.fps, 1)} fps`),
        r.session_id ? [h("dt", "Frames"), h("dd", { dataset: { testid: "frames" } }, fmtNumber(r.frames))] : null,
      ) : h("p.muted", "No status reported yet"),
      r.error ? h("p.error-text", r.error) : null,
      sessionLine(r),
      h("p.muted.small", `Last seen ${fmtTime(r.last_seen_at)}`,
        r.open_alerts ? h("span.tone-text-bad", ` · ${r.open_alerts} open alert${r.open_alerts > 1 ? "s" : ""}`) : null),
      resultChip(r));
  }

  function row(r) {
    const t = tone(r.state);
    const clock = clockFacts(r.clock_offset_s);
    const s = r.session_id ? sessions.get(r.session_id) : null;
    return h("tr", { dataset: { enclosure: r.id, state: r.state } },
      operator ? h("td.sel", selectBox(r)) : null,
      h("td", h("a", { href: `#/enclosures/${r.id}` }, r.id), r.name && r.name !== r.id ? h("span.muted.small", ` ${r.name}`) : null),
      h("td", h(`span.badge.tone-${t}`, { dataset: { testid: "state" } }, stateWord(r.state))),
      h(`td.num.tone-text-${diskTone(r.disk_free_pct)}`, pct(r.disk_free_pct)),
      h(`td.tone-text-${clock.tone}`, r.clock_offset_s === null || r.clock_offset_s === undefined ? "–" : `${fmtNumber(r.clock_offset_s * 1000, 0)} ms`),
      h("td.num", r.fps === null || r.fps === undefined ? "–" : fmtNumber(r.fps, 1)),
      h("td", r.session_id
        ? [h("a", { href: `#/sessions/${encodeURIComponent(r.session_id)}` }, s?.name || r.session_id),
          h("span.small", { dataset: { testid: "recorded" } }, ` ${fmtDuration(r.recorded_s || 0)}`)]
        : h("span.muted", "–")),
      h("td.small", r.error ? h("span.error-text", r.error) : fmtTime(r.last_seen_at)),
      operator ? h("td", resultChip(r)) : null);
  }

  const make = (r) => (view === "table" ? row(r) : card(r));

  /** Redraw the one card or row of an enclosure, if it is built. */
  function redraw(id) {
    const el = nodes.get(id);
    const r = records.get(id);
    if (!el || !r) return;
    const fresh = make(r);
    el.replaceWith(fresh);
    nodes.set(id, fresh);
  }

  // -- layout: groups, chunks built as they come near the screen ----------------------------
  function estimate(count) {
    if (view === "table") return count * 37;
    const columns = Math.max(1, Math.floor((fleet.clientWidth + 16) / (270 + 16)));
    return Math.ceil(count / columns) * ((cardHeight || 220) + 16);
  }

  function chunks(ids) {
    const size = view === "table" ? ROW_CHUNK : CARD_CHUNK;
    const out = [];
    for (let i = 0; i < ids.length; i += size) {
      const part = ids.slice(i, i + size);
      const el = view === "table"
        ? h("tbody.chunk", h("tr.placeholder", h("td", { colspan: operator ? 9 : 7 })))
        : h("div.cards.chunk");
      if (view === "table") el.firstChild.firstChild.style.height = `${estimate(part.length)}px`;
      else el.style.minHeight = `${estimate(part.length)}px`;
      chunkOf.set(el, part);
      out.push(el);
    }
    if (view !== "table") return out;
    return h("div.table-wrap", h("table.data.fleet-table",
      h("thead", h("tr", operator ? h("th", h("span.sr", "Selected")) : null,
        ["Enclosure", "State", "Disk free", "Clock", "fps", "Session", "Last seen"].map((t) => h("th", t)),
        operator ? h("th", "Result") : null)),
      out));
  }

  function build(el) {
    const ids = chunkOf.get(el);
    if (!ids) return;
    chunkOf.delete(el);
    const built = ids.map((id) => {
      const n = make(records.get(id));
      nodes.set(id, n);
      return n;
    });
    el.replaceChildren(...built);
    el.style.minHeight = "";
    el.classList.add("built");
    if (!cardHeight && view === "cards" && built[0]) cardHeight = built[0].getBoundingClientRect().height;
  }

  function groupHead(tag, title, ids) {
    let box = null;
    if (operator) {
      box = h("input.select", {
        type: "checkbox", "aria-label": `Select ${title}`, dataset: { selectGroup: title },
        onchange: () => { for (const id of ids) box.checked ? selected.add(id) : selected.delete(id); selectionChanged(); },
      });
      groupBoxes.push({ box, ids });
    }
    // The checkbox beside the heading, not in it: the heading's name stays the group's.
    return h(`div.group-head.${tag === "h2" ? "room-head" : "rack-head"}`, box, h(tag, title),
      h("span.muted.small.group-count", `${ids.length} enclosure${ids.length === 1 ? "" : "s"}`));
  }

  function layout() {
    if (observer) observer.disconnect();
    nodes = new Map();
    chunkOf = new Map();
    groupBoxes = [];
    const list = [...records.values()].filter((r) => matches(r, filter));
    shown = new Set(list.map((r) => r.id));
    fleet.dataset.view = view;
    if (!list.length) {
      clear(fleet, h("p.muted", records.size ? "No enclosure matches the filter." : "No enclosures are registered yet."));
      return;
    }
    clear(fleet, groupFleet(list).map(({ room, racks }) => {
      const roomIds = racks.flatMap((k) => k.records.map((r) => r.id));
      return h("section.room", { dataset: { room }, "aria-label": room },
        groupHead("h2", room, roomIds),
        racks.map(({ rack, records: rs }) => {
          const ids = rs.map((r) => r.id);
          return h("section.rack", { dataset: { group: rack ? `${room}/${rack}` : room } },
            rack ? groupHead("h3", rack, ids) : null,
            chunks(ids));
        }));
    }));
    observer = new IntersectionObserver((entries) => {
      for (const e of entries) {
        if (!e.isIntersecting) continue;
        observer.unobserve(e.target);
        build(e.target);
      }
    }, { rootMargin: NEAR });
    for (const el of chunkOf.keys()) observer.observe(el);
    refreshGroupBoxes();
  }

  // -- counts, filter, view -------------------------------------------------------------
  function renderCounts() {
    const c = Object.fromEntries(ENCLOSURE_STATES.map((s) => [s, 0]));
    for (const r of records.values()) c[r.state] = (c[r.state] || 0) + 1;
    for (const [s, b] of stateButtons) {
      b.textContent = s ? `${stateWord(s)} ${c[s] || 0}` : `All ${records.size}`;
      b.setAttribute("aria-pressed", String(s === filter.state));
    }
    summary.textContent = `${records.size} enclosures: ` +
      ENCLOSURE_STATES.filter((s) => c[s]).map((s) => `${c[s]} ${stateWord(s).toLowerCase()}`).join(", ");
  }

  function setState(s) {
    filter.state = s;
    renderCounts();
    layout();
  }

  function setView(v) {
    if (v === view) return;
    view = v;
    try { localStorage.setItem(VIEW_KEY, v); } catch { /* private mode: not remembered */ }
    for (const b of viewButtons) b.setAttribute("aria-pressed", String(b.dataset.view === v));
    layout();
  }

  // -- selection and bulk actions -----------------------------------------------------------
  function toggle(id, on) {
    if (on) selected.add(id); else selected.delete(id);
    selectionChanged(false);
  }

  function refreshGroupBoxes() {
    for (const { box, ids } of groupBoxes) {
      const n = ids.reduce((k, id) => k + selected.has(id), 0);
      box.checked = n === ids.length;
      box.indeterminate = n > 0 && n < ids.length;
    }
  }

  function selectionChanged(boxes = true) {
    if (boxes) for (const [id, el] of nodes) {
      const box = el.querySelector("input[data-select]");
      if (box) box.checked = selected.has(id);
    }
    refreshGroupBoxes();
    selectedCount.textContent = `${selected.size} selected`;
    for (const b of actionButtons) b.disabled = selected.size === 0;
  }

  function selectShown() {
    for (const id of shown) selected.add(id);
    selectionChanged();
  }

  function renderBulkStatus() {
    if (!bulk) return;
    const t = bulk.totals();
    const parts = Object.entries(t).map(([s, n]) => `${n} ${resultWord({ state: s })}`);
    clear(bulkStatus, parts.length ? [
      `Results: ${parts.join(", ")} `,
      h("button.small.secondary", { type: "button", onclick: () => bulk.clear() }, "Clear results"),
    ] : null);
  }

  async function bulkSend(kind) {
    const ids = [...selected].sort();
    if (!ids.length) return;
    if (kind === "restart_agent" && !await confirmDialog({
      title: `Restart ${ids.length} agent${ids.length > 1 ? "s" : ""}?`,
      message: "Each selected enclosure's agent restarts; a recording in progress stops.",
      confirmLabel: "Restart agents", cancelLabel: "Do not restart",
    })) return;
    await bulk.send(kind, ids);
  }

  function startSessionDialog() {
    const ids = [...selected].sort();
    if (!ids.length) return;
    const name = h("input", { id: "bulk-session-name", required: true, maxlength: 200 });
    const minutes = h("input", { id: "bulk-session-minutes", type: "number", min: 1, value: 60, required: true });
    const offline = h("input", { id: "bulk-session-offline", type: "checkbox" });
    const error = h("p.form-error", { role: "alert", hidden: true });
    const go = h("button", { type: "submit" }, "Start session");
    const cancel = h("button.secondary", { type: "button", onclick: () => dialog.close() }, "Cancel");
    const form = h("form", { onsubmit: submit },
      h("p", `On ${ids.length} enclosure${ids.length > 1 ? "s" : ""}; each one's files start with its id.`),
      h("div.field", h("label", { for: "bulk-session-name" }, "Name"), name),
      h("div.field", h("label", { for: "bulk-session-minutes" }, "Duration (minutes)"), minutes),
      h("div.field.check", h("label", { for: "bulk-session-offline" }, "Include lost or offline enclosures"), offline),
      error,
      h("div.buttons", cancel, go));
    const dialog = h("dialog.confirm", { "aria-labelledby": "bulk-session-title" },
      h("h2", { id: "bulk-session-title" }, "Start a session on the selection"), form);
    dialog.addEventListener("close", () => dialog.remove());
    document.body.append(dialog);
    dialog.showModal();
    name.focus();

    async function submit(e) {
      e.preventDefault();
      go.disabled = true;
      error.hidden = true;
      try {
        const s = await api("POST", "/api/sessions", {
          name: name.value.trim(), duration_s: Math.round(Number(minutes.value) * 60),
          allow_offline: offline.checked,
          enclosures: ids.map((id) => ({ id, file_prefix: id })),
        });
        dialog.close();
        location.hash = `#/sessions/${encodeURIComponent(s.id)}`;
      } catch (err) {
        const fields = (err.errors || []).map((x) => `${(x.loc || []).join(".") || x.field || ""}: ${x.msg || x.message || ""}`);
        error.textContent = [err.message, ...fields.slice(0, 3)].join(" ");
        error.hidden = false;
        go.disabled = false;
      }
    }
  }

  // -- data and live events -------------------------------------------------------------
  const timers = new Map();
  function soon(fn, ms = 150) { // coalesce bursts into one call
    if (timers.has(fn)) return;
    timers.set(fn, setTimeout(() => { timers.delete(fn); fn(); }, ms));
  }

  // A running session announces its totals every few seconds; the recording figures of its
  // enclosures are then re-read from the summary (the session's figures, the same on every
  // page; the browser revalidates it with its ETag), at most once per announcement burst.
  async function refreshRecordingFigures() {
    if (pending) return;
    let fresh;
    try { fresh = await loadFleet(); } catch { return; }
    for (const f of fresh) {
      const r = records.get(f.id);
      if (!r || (r.session_id === f.session_id && r.recorded_s === f.recorded_s && r.frames === f.frames)) continue;
      r.session_id = f.session_id; r.recorded_s = f.recorded_s; r.frames = f.frames;
      redraw(r.id);
    }
  }

  /** Reloads the running and scheduled sessions; false (and nothing changed) if it failed. */
  async function loadSessions() {
    const running = await Promise.all(["running", "scheduled"].map((status) =>
      api("GET", "/api/sessions", undefined, { query: { status, limit: 500 } }).catch(() => null)));
    if (running.includes(null)) return false;
    sessions.clear();
    for (const s of running.flatMap((p) => p.items)) sessions.set(s.id, s);
    return true;
  }

  // Events that arrive while the fleet loads are kept and applied to what it returns.
  let pending = [];
  async function load() {
    pending = pending || [];
    try {
      const [list] = await Promise.all([loadFleet(), loadSessions()]);
      records.clear();
      for (const r of list) records.set(r.id, r);
      renderCounts();
      layout();
      selectionChanged();
    } catch (err) {
      clear(fleet, h("p.error-text", { role: "alert" }, `Could not load the fleet: ${err.message}`));
    }
    const queued = pending;
    pending = null;
    queued.forEach((fn) => fn());
  }

  const fetching = new Set();
  async function addEnclosure(id) { // registered since the load
    if (fetching.has(id)) return;
    fetching.add(id);
    try {
      records.set(id, fromEnclosure(await api("GET", `/api/enclosures/${encodeURIComponent(id)}`)));
      soon(renderCounts);
      soon(layout, 300);
    } catch {
      // retired or gone meanwhile: nothing to show
    } finally {
      fetching.delete(id);
    }
  }

  /** An enclosure's record changed: redraw it, or lay out again if it enters or leaves the filter. */
  function changed(id, stateChanged) {
    const r = records.get(id);
    if (matches(r, filter) !== shown.has(id)) soon(layout, 300);
    else redraw(id);
    if (stateChanged) soon(renderCounts);
  }

  function withRecord(id, fn) {
    if (pending) { pending.push(() => withRecord(id, fn)); return; }
    const r = records.get(id);
    if (r) fn(r); else addEnclosure(id);
  }

  const off = [
    events.on("enclosure.state", ({ data }) => withRecord(data.enclosure_id, (r) => {
      const was = r.state;
      r.state = data.state;
      if (was !== r.state) r.since = data.at ?? r.since;
      changed(r.id, was !== r.state);
    })),
    events.on("enclosure.status", ({ data }) => withRecord(data.enclosure_id, (r) => {
      const was = r.state;
      Object.assign(r, statusFields(data.status));
      if (data.state) r.state = data.state;
      r.last_seen_at = data.at ?? r.last_seen_at;
      changed(r.id, was !== r.state);
    })),
    events.on("session.progress", ({ data }) => {
      if (!data.enclosure_id) { soon(refreshRecordingFigures, 1000); return; }
      withRecord(data.enclosure_id, (r) => { if (applyProgress(r, data)) redraw(r.id); });
    }),
    events.on("session.state", () => {
      loadSessions().then((ok) => {
        if (ok) for (const id of dropEndedSessions(records, sessions)) redraw(id);
        for (const r of records.values()) if (r.session_id) redraw(r.id);
      });
    }),
    bulk ? bulk.stop : () => {},
  ];
  renderCounts();
  selectionChanged();
  load();
  return () => {
    off.forEach((f) => f());
    timers.forEach((t) => clearTimeout(t));
    if (observer) observer.disconnect();
  };
}
