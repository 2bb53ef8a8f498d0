// One enclosure: state, health, status history charts, commands and their results, live view.

import { api, canOperate } from "../api.js";
import { h, clear } from "../dom.js";
import * as events from "../events.js";
import { lineChart } from "../chart.js";
import { fmtDuration, fmtNumber, fmtTime, health, stateWord, tone } from "../format.js";
import { BASIS_WORDS, lostWords, progressWords } from "../progress.js";

const HISTORY_POINTS = 500; // newest heartbeats drawn (40 min at the default 5 s interval)
const MAX_POINTS = 2000;
let liveRouteKnown = null; // does this service have GET /api/enclosures/{eid}/live?

async function hasLiveRoute() {
  if (liveRouteKnown === null) {
    try {
      const spec = await fetch("/swagger.json").then((r) => r.json());
      liveRouteKnown = Object.keys(spec.paths || {}).some((p) => /^\/api\/enclosures\/\{[^}]+\}\/live$/.test(p));
    } catch {
      liveRouteKnown = false;
    }
  }
  return liveRouteKnown;
}

function point(item) {
  const s = item.status || {};
  const sys = s.system || {};
  return {
    at: new Date(item.at),
    disk: sys.disk_total_bytes ? (100 * sys.disk_free_bytes) / sys.disk_total_bytes : null,
    load: sys.load_1 ?? null,
    fps: s.camera?.measured_fps ?? null,
  };
}

// How far a command has come: its record from the POST's answer and from the event stream race
// each other, and an older one must not replace a newer one (the answer to the POST often
// arrives after the event saying the agent already answered).
const COMMAND_PROGRESS = { pending: 0, sent: 1, accepted: 2 };
const progress = (state) => COMMAND_PROGRESS[state] ?? 3; // every other state is final

export function enclosurePage(main, eid) {
  let enc = null;
  const history = [];
  const commands = new Map();

  let liveOn = false;

  const title = h("h1", eid);
  const badge = h("span.badge");
  const facts = h("div.panel");
  const charts = {
    disk: lineChart({ title: "Disk free", unit: "%", points: [], max: 100 }),
    load: lineChart({ title: "Load (1 min)", unit: "", points: [] }),
    fps: lineChart({ title: "Camera", unit: "fps", points: [] }),
  };
  const commandRows = h("tbody");
  const message = h("p.notice", { role: "status", hidden: true });
  const buttons = h("div.buttons");
  const transitions = h("ul.timeline");
  const recStrip = h("div.rec-strip", { role: "img", "aria-label": "Recording timeline" });
  const recSummary = h("p.summary");
  const recRows = h("tbody");
  const liveImg = h("img.live-img", { alt: `Live view of ${eid}`, hidden: true });
  const livePlaceholder = h("p.live-off", { dataset: { testid: "live-off" } },
    "The live view is off. Start it to watch the camera: frames are sent only while someone watches.");
  const liveButton = h("button", { type: "button", onclick: () => (liveOn ? stopLive() : startLive()) }, "Start live view");
  const livePanel = h("section.panel", { hidden: true, "aria-labelledby": "live-h" },
    h("h2#live-h", "Live view"), liveButton, h("div.live-box", livePlaceholder, liveImg));

  clear(main,
    h("p.crumbs", h("a", { href: "#/" }, "Fleet"), " / ", eid),
    h("div.page-head", title, badge),
    facts,
    h("section.panel", { "aria-labelledby": "cmd-h" },
      h("h2#cmd-h", "Commands"), buttons, message,
      h("div.table-wrap", h("table.data", h("caption.sr", "Recent commands"),
        h("thead", h("tr", ["Sent", "Command", "Result", "Detail"].map((c) => h("th", { scope: "col" }, c)))),
        commandRows))),
    livePanel,
    h("section.panel", { "aria-labelledby": "rec-h", dataset: { testid: "recordings" } },
      h("h2#rec-h", "Recordings, last 7 days"), recSummary, recStrip,
      h("div.table-wrap", h("table.data", h("caption.sr", "Recorded spans and gaps"),
        h("thead", h("tr", ["From", "To", "Length", "What", "Session"].map((c) => h("th", { scope: "col" }, c)))),
        recRows))),
    h("section.panel", { "aria-labelledby": "hist-h" },
      h("h2#hist-h", "Status history"), h("div.charts", charts.disk, charts.load, charts.fps)),
    h("section.panel", { "aria-labelledby": "tr-h" }, h("h2#tr-h", "State changes"), transitions));

  function renderHead() {
    title.textContent = enc.name && enc.name !== enc.id ? `${enc.name} (${enc.id})` : enc.id;
    badge.className = `badge tone-${tone(enc.state)}`;
    badge.textContent = stateWord(enc.state);
    badge.dataset.testid = "state";
    const hl = health(enc.status);
    clear(facts, h("dl.facts.wide",
      h("dt", "Location"), h("dd", enc.location || "–"),
      h("dt", "Last seen"), h("dd", fmtTime(enc.last_seen_at)),
      h("dt", "Agent"), h("dd", enc.agent_version || "–"),
      h("dt", "Expected online"), h("dd", canOperate()
        ? h("label.inline-check", h("input", { type: "checkbox", checked: enc.expected_online,
          dataset: { testid: "expected-online" }, onchange: (ev) => setExpected(ev.target) }),
        " alert when lost, even outside sessions")
        : enc.expected_online ? "yes (alerts when lost)" : "no"),
      hl ? [
        h("dt", "Disk free"), h(`dd.tone-text-${hl.diskTone}`, hl.diskPct === null ? "–" : `${fmtNumber(hl.diskPct, 1)} %`),
        h("dt", "Load"), h("dd", fmtNumber(hl.load, 2)),
        h("dt", "Clock"), h(`dd.tone-text-${hl.clockTone}`, hl.clockWord),
        h("dt", "Camera"), h("dd", hl.cameraConnected ? `${fmtNumber(hl.fps, 1)} fps measured` : "not connected"),
        hl.lastError ? [h("dt", "Last error"), h("dd.error-text", hl.lastError)] : null,
      ] : null,
      // The session it records for: the service's figures, the same as on the session page.
      h("dt", "Session"), h("dd", { dataset: { testid: "session-progress" } }, sessionFact(enc.session))),
      enc.notes ? h("p", enc.notes) : null);
  }

  function sessionFact(part) {
    if (!part) return "none";
    const p = part.progress;
    return [
      h("a", { href: `#/sessions/${encodeURIComponent(part.session_id)}` }, part.session_name),
      " ", h(`span.badge.tone-${part.lost ? "bad" : tone(part.state)}`, stateWord(part.lost ? "lost" : part.state)),
      h("br"), `${progressWords(p, part.duration_s)} `, h("span.muted", `(${BASIS_WORDS[p.basis] || p.basis})`),
      part.lost ? [h("br"), h("span.error-text", lostWords(part))] : null,
    ];
  }

  const SPAN_WORDS = { recorded: "Recorded", recording: "Recording (open file)" };
  const CAUSE_WORDS = {
    agent_restart: "agent restarted", camera_stalled: "camera stalled",
    not_recorded: "not recorded (failed or timed out)", unexplained: "files missing, no cause reported",
  };

  function renderTimeline(t) {
    const start = Date.parse(t.window_start);
    const width = Date.parse(t.window_end) - start;
    const open = t.spans.filter((s) => s.kind === "recording").reduce((n, s) => n + s.duration_s, 0);
    recSummary.textContent = `${fmtDuration(t.recorded_s)} in closed files`
      + (open ? `, ${fmtDuration(open)} in the file being recorded` : "")
      + `, ${fmtDuration(t.gap_s)} in gaps (${fmtTime(t.window_start)} – ${fmtTime(t.window_end)}).`;
    clear(recStrip, t.spans.map((s) => {
      const bar = h(`span.rec-span.rec-${s.kind}`, { title: `${SPAN_WORDS[s.kind] || "Gap"}: ${s.session_name}` });
      bar.style.left = `${(100 * (Date.parse(s.started_at) - start)) / width}%`;
      bar.style.width = `${Math.max(0.2, (100 * s.duration_s * 1000) / width)}%`;
      return bar;
    }));
    const spans = [...t.spans].reverse().slice(0, 50); // newest first
    clear(recRows, spans.length ? spans.map((s) => h("tr", { dataset: { span: s.kind } },
      h("td", fmtTime(s.started_at)),
      h("td", fmtTime(s.ended_at)),
      h("td", fmtDuration(s.duration_s)),
      h("td", s.kind === "gap"
        ? h("span.badge.tone-bad", `Gap: ${CAUSE_WORDS[s.cause] || s.cause}`)
        : [h(`span.badge.tone-${s.kind === "recording" ? "info" : "ok"}`, SPAN_WORDS[s.kind]),
          s.segments ? ` ${s.segments} files, ${fmtNumber(s.frames)} frames` : ""]),
      h("td", h("a", { href: `#/sessions/${encodeURIComponent(s.session_id)}` }, s.session_name))))
      : h("tr", h("td", { colspan: 5 }, "Nothing recorded in the last 7 days.")));
  }

  async function setExpected(box) {
    box.disabled = true;
    try {
      enc = await api("PATCH", `/api/enclosures/${eid}`, { expected_online: box.checked });
      message.hidden = false;
      message.textContent = enc.expected_online
        ? `${eid} is expected online: losing it raises an alert, in a session or not.`
        : `${eid} is no longer expected online.`;
    } catch (err) {
      box.checked = !box.checked;
      message.hidden = false;
      message.textContent = `Could not change it: ${err.message}`;
    }
    renderHead();
  }

  function renderCharts() {
    charts.disk.update(history.map((p) => [p.at, p.disk]));
    charts.load.update(history.map((p) => [p.at, p.load]));
    charts.fps.update(history.map((p) => [p.at, p.fps]));
  }

  function renderCommands() {
    const rows = [...commands.values()].sort((a, b) => b.created_at.localeCompare(a.created_at)).slice(0, 20);
    clear(commandRows, rows.length ? rows.map((c) => h("tr", { dataset: { command: c.id } },
      h("td", fmtTime(c.created_at)),
      h("td", c.kind.replaceAll("_", " ")),
      h("td", h(`span.badge.tone-${tone(c.state)}`, stateWord(c.state))),
      h("td", c.detail || (c.result ? JSON.stringify(c.result) : "")))) : h("tr", h("td", { colspan: 4 }, "No commands yet.")));
  }

  function keepNewest(c) {
    const known = commands.get(c.id);
    if (!known || progress(c.state) >= progress(known.state)) commands.set(c.id, c);
  }

  async function send(kind, params = {}, note = "") {
    try {
      const c = await api("POST", `/api/enclosures/${eid}/commands`, { kind, params });
      keepNewest(c);
      renderCommands();
      message.hidden = false;
      message.textContent = `${kind.replaceAll("_", " ")} sent${note}.`;
      return c;
    } catch (err) {
      message.hidden = false;
      message.textContent = `Could not send ${kind}: ${err.message}`;
      return null;
    }
  }

  async function startLive() {
    // The relay asks the agent for previews while anyone watches; the page only opens the stream.
    liveOn = true;
    liveButton.textContent = "Stop live view";
    // The relay needs a token: a fresh single-use ticket, never the bearer token, in the URL.
    const { ticket } = await api("POST", "/api/events/ticket");
    liveImg.src = `/api/enclosures/${eid}/live?ticket=${encodeURIComponent(ticket)}`;
    liveImg.hidden = false;
    livePlaceholder.hidden = true;
  }

  function stopLive() {
    if (!liveOn) return;
    liveOn = false;
    // Closing the stream is enough: the relay lets the agent stop once nobody watches (other
    // viewers may still be watching, so never send stop_live_view from here).
    liveImg.removeAttribute("src");
    liveImg.hidden = true;
    livePlaceholder.hidden = false;
    liveButton.textContent = "Start live view";
  }

  async function load() {
    try {
      enc = await api("GET", `/api/enclosures/${eid}`);
    } catch (err) {
      clear(main, h("h1", eid), h("p.error-text", { role: "alert" },
        err.status === 404 ? "No enclosure has this id." : `Could not load it: ${err.message}`),
      h("p", h("a", { href: "#/" }, "Back to the fleet")));
      return;
    }
    renderHead();
    if (canOperate()) {
      clear(buttons,
        h("button", { type: "button", onclick: () => send("ping") }, "Ping"),
        h("button", { type: "button", onclick: () => send("snapshot") }, "Snapshot"),
        h("button.secondary", { type: "button", onclick: () => send("rebirth") }, "Re-send status"));
    } else {
      clear(buttons, h("p.muted", "Viewers cannot send commands."));
    }
    livePanel.hidden = !(await hasLiveRoute());
    api("GET", `/api/enclosures/${eid}/timeline`).then(renderTimeline, (err) => {
      recSummary.textContent = `Could not load the recordings: ${err.message}`;
    });
    const [hist, cmds, trans] = await Promise.all([
      api("GET", `/api/enclosures/${eid}/status-history`, undefined, { query: { limit: HISTORY_POINTS } }),
      api("GET", `/api/enclosures/${eid}/commands`, undefined, { query: { limit: 20 } }),
      api("GET", `/api/enclosures/${eid}/transitions`, undefined, { query: { limit: 10 } }).catch(() => ({ items: [] })),
    ]);
    history.splice(0, history.length, ...hist.items.reverse().map(point));
    renderCharts();
    for (const c of cmds.items) commands.set(c.id, c);
    renderCommands();
    clear(transitions, trans.items.length ? trans.items.map((t) => h("li",
      h("span.muted", fmtTime(t.at)), " ",
      h(`span.badge.tone-${tone(t.from_state)}`, stateWord(t.from_state)), " → ",
      h(`span.badge.tone-${tone(t.to_state)}`, stateWord(t.to_state)), ` ${t.reason}`)) : h("li.muted", "No changes yet."));
  }

  // The session figures change with the bridge's progress reports and state changes: ask the
  // service again (a heartbeat's own counters would disagree with the session page).
  let refreshTimer = null;
  function refreshSession() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(async () => {
      try {
        const fresh = await api("GET", `/api/enclosures/${eid}`);
        if (!enc) return;
        enc.session = fresh.session;
        enc.state = fresh.state;
        renderHead();
      } catch { /* the next event tries again */ }
    }, 250);
  }
  const mine = ({ session_id: sid, data }) => {
    const about = sid || data?.session_id;
    if (data?.enclosure_id === eid || (about && about === enc?.session?.session_id)) refreshSession();
  };

  const off = [
    events.on("session.progress", mine),
    events.on("session.state", mine),
    events.on("enclosure.state", ({ data }) => {
      if (!enc || data.enclosure_id !== eid) return;
      enc.state = data.state;
      refreshSession();
      renderHead();
      transitions.prepend(h("li", h("span.muted", fmtTime(data.at)), " ",
        h(`span.badge.tone-${tone(data.previous_state)}`, stateWord(data.previous_state)), " → ",
        h(`span.badge.tone-${tone(data.state)}`, stateWord(data.state)), ` ${data.reason || ""}`));
    }),
    events.on("enclosure.status", ({ data }) => {
      if (!enc || data.enclosure_id !== eid) return;
      enc.state = data.state;
      enc.status = data.status;
      enc.last_seen_at = data.at;
      renderHead();
      history.push(point({ at: data.at, status: data.status }));
      if (history.length > MAX_POINTS) history.shift();
      renderCharts();
    }),
    events.on("command.updated", ({ data }) => {
      if (data.enclosure_id !== eid) return;
      keepNewest(data);
      renderCommands();
    }),
  ];
  load();
  return () => { off.forEach((f) => f()); clearTimeout(refreshTimer); stopLive(); };
}
