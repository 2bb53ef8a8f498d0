// Recording sessions: the list, the create form and one session's detail.

import { api, canOperate, listAll } from "../api.js";
import { confirmDialog } from "../dialog.js";
import { h, clear, progressBar } from "../dom.js";
import * as events from "../events.js";
import { field, formError, showErrors, clearErrors } from "../forms.js";
import { fmtBytes, fmtDuration, fmtNumber, fmtTime, stateWord, tone } from "../format.js";
import { BASIS_WORDS, closedFiles, displayName, lostWords, progressDetail } from "../progress.js";

const ACTIVE = new Set(["scheduled", "running"]);
const DURATION_UNITS = { s: 1, min: 60, h: 3600, d: 86400 };

function debounce(fn, ms = 300) {
  let t = null;
  const wrapped = () => { clearTimeout(t); t = setTimeout(fn, ms); };
  wrapped.cancel = () => clearTimeout(t);
  return wrapped;
}

function statesLine(counts) {
  return Object.entries(counts || {}).map(([s, n]) => `${n} ${stateWord(s).toLowerCase()}`).join(", ");
}

// --- the list --------------------------------------------------------------------------------

export function sessionsPage(main) {
  const bodies = { active: h("tbody"), finished: h("tbody"), archived: h("tbody") };
  const table = (key, caption) => h("section.panel", { "aria-labelledby": `${key}-h` },
    h(`h2#${key}-h`, caption),
    h("div.table-wrap", h("table.data", { dataset: { list: key } },
      h("thead", h("tr", ["Session", "Status", "Enclosures", "Start", "Duration"].map((c) => h("th", { scope: "col" }, c)))),
      bodies[key])));
  const templateBody = h("tbody");
  const templateNote = h("p.notice", { role: "status", hidden: true });
  clear(main,
    h("div.page-head", h("h1", "Sessions"),
      canOperate() ? h("a.button", { href: "#/sessions/new" }, "New session") : null),
    table("active", "Active"), table("finished", "Finished"), table("archived", "Archived"),
    h("section.panel", { "aria-labelledby": "tpl-h", dataset: { testid: "templates" } },
      h("h2#tpl-h", "Templates"), templateNote,
      h("div.table-wrap", h("table.data",
        h("thead", h("tr", ["Template", "Enclosures", "Duration", "Saved by", ""].map((c, i) =>
          h("th", { scope: "col" }, c || h("span.sr", i === 4 ? "Actions" : ""))))),
        templateBody))));

  async function loadTemplates() {
    try {
      const items = await listAll("/api/session-templates", {}, 500);
      clear(templateBody, items.length ? items.map((t) => h("tr", { dataset: { template: t.id } },
        h("td", t.name),
        h("td", t.enclosures.map((e) => `${e.id} (${e.file_prefix})`).join(", ")),
        h("td", fmtDuration(t.duration_s)),
        h("td", t.created_by || "–"),
        h("td", canOperate() ? h("div.buttons.inline",
          h("a.button.small", { href: `#/sessions/new/template/${t.id}`, "aria-label": `Start a session from ${t.name}` }, "Start"),
          h("button.secondary.small", { type: "button", "aria-label": `Delete template ${t.name}`, onclick: async () => {
            const sure = await confirmDialog({
              title: "Delete the template?",
              message: `"${t.name}" is deleted; sessions started from it stay.`,
              confirmLabel: "Delete template",
              cancelLabel: "Keep it",
            });
            if (!sure) return;
            try {
              await api("DELETE", `/api/session-templates/${t.id}`);
              templateNote.hidden = false;
              templateNote.textContent = `Template "${t.name}" deleted.`;
            } catch (err) {
              templateNote.hidden = false;
              templateNote.textContent = `Could not delete it: ${err.message}`;
            }
            loadTemplates();
          } }, "Delete")) : null)))
        : h("tr", h("td", { colspan: 5, class: "muted" },
          "No template yet: save one from the new-session form or from a session's page.")));
    } catch (err) {
      clear(templateBody, h("tr", h("td", { colspan: 5, class: "error-text" }, `Could not load templates: ${err.message}`)));
    }
  }
  loadTemplates();

  function rows(items, empty) {
    return items.length ? items.map((s) => h("tr", { dataset: { session: s.id } },
      h("td", h("a", { href: `#/sessions/${encodeURIComponent(s.id)}` }, s.name), h("div.muted.small", s.id)),
      h("td", h(`span.badge.tone-${tone(s.status)}`, stateWord(s.status))),
      h("td", statesLine(s.enclosure_states)),
      h("td", fmtTime(s.start_at)),
      h("td", fmtDuration(s.duration_s)))) : h("tr", h("td", { colspan: 5, class: "muted" }, empty));
  }

  async function load() {
    try {
      const [current, archived] = await Promise.all([
        listAll("/api/sessions", { archived: false }, 1000),
        api("GET", "/api/sessions", undefined, { query: { archived: true, limit: 100 } }),
      ]);
      clear(bodies.active, rows(current.filter((s) => ACTIVE.has(s.status)), "No active session."));
      clear(bodies.finished, rows(current.filter((s) => !ACTIVE.has(s.status)), "No finished session."));
      clear(bodies.archived, rows(archived.items, "Nothing archived."));
    } catch (err) {
      clear(bodies.active, h("tr", h("td", { colspan: 5, class: "error-text" }, `Could not load sessions: ${err.message}`)));
    }
  }
  const reload = debounce(load);
  const off = [events.on("session.state", reload)];
  load();
  return () => { off.forEach((f) => f()); reload.cancel(); };
}

// --- the create form -------------------------------------------------------------------------

// The duration in the largest unit that divides it (3600 s -> 1 h).
function durationParts(seconds) {
  for (const unit of ["d", "h", "min"]) {
    if (seconds % DURATION_UNITS[unit] === 0) return [seconds / DURATION_UNITS[unit], unit];
  }
  return [seconds, "s"];
}

// What a template or an earlier session records, as the form's fields (null: nothing).
async function prefill(kind, ref) {
  if (kind === "template") {
    const t = await api("GET", `/api/session-templates/${encodeURIComponent(ref)}`);
    return { ...t, enclosures: t.enclosures.map((e) => ({ id: e.id, file_prefix: e.file_prefix })), what: `template "${t.name}"` };
  }
  if (kind === "like") {
    const s = await api("GET", `/api/sessions/${encodeURIComponent(ref)}`);
    return { ...s, enclosures: s.enclosures.map((e) => ({ id: e.enclosure_id, file_prefix: e.file_prefix })), what: `session "${s.name}"` };
  }
  return null;
}

export function sessionNewPage(main, kind, ref) {
  if (!canOperate()) {
    clear(main, h("h1", "New session"), h("p", "Only operators and administrators can start sessions."));
    return null;
  }
  const name = field("Name", h("input", { name: "name", required: true, maxlength: 200 }));
  const encFieldset = h("fieldset.enclosure-pick", h("legend", "Enclosures and file prefixes"));
  const encError = h("p.field-error", { hidden: true });
  const enclosures = { row: encFieldset, input: encFieldset, error: encError };
  const durationValue = h("input", { name: "duration", type: "number", min: 1, step: "any", value: 1, required: true });
  const durationUnit = h("select", { "aria-label": "Duration unit" },
    Object.keys(DURATION_UNITS).map((u) => h("option", { value: u, selected: u === "h" }, u)));
  const duration = field("Duration", durationValue);
  duration.row.querySelector("input").after(durationUnit);
  const fps = field("Frames per second", h("input", { name: "target_fps", type: "number", min: 1, max: 120, placeholder: "agent default" }));
  const segMode = h("select", { name: "segmentation" },
    h("option", { value: "default" }, "The agent's default"),
    h("option", { value: "hourly" }, "A new file every hour (UTC)"),
    h("option", { value: "minutes" }, "A new file every N minutes"));
  const segmentation = field("Files", segMode);
  const minutes = field("Minutes per file", h("input", { name: "segment_minutes", type: "number", min: 1, max: 1440, value: 60 }));
  minutes.row.hidden = true;
  segMode.addEventListener("change", () => { minutes.row.hidden = segMode.value !== "minutes"; });
  const filter = field("Apply the image (denoise) filter", h("input", { name: "apply_filter", type: "checkbox" }));
  filter.row.classList.add("check");
  const startAt = field("Start at", h("input", { name: "start_at", type: "datetime-local" }), "Leave empty to start now (your local time).");
  const notes = field("Notes", h("textarea", { name: "notes", rows: 3, maxlength: 10000 }));
  const allowOffline = field("Also accept lost or offline enclosures (they start when they come back)",
    h("input", { name: "allow_offline", type: "checkbox" }));
  allowOffline.row.classList.add("check");
  const submit = h("button", { type: "submit" }, "Start session");
  const saveTemplate = h("button.secondary", { type: "button" }, "Save as template");
  const note = h("p.notice", { role: "status", hidden: true, dataset: { testid: "form-note" } });
  const form = h("form.session-form", { novalidate: true },
    name.row, encFieldset, encError, duration.row, fps.row, segmentation.row, minutes.row,
    filter.row, startAt.row, notes.row, allowOffline.row, formError(),
    h("div.buttons", submit, saveTemplate, h("a.button.secondary", { href: "#/sessions" }, "Cancel")));
  clear(main, h("p.crumbs", h("a", { href: "#/sessions" }, "Sessions"), " / new"),
    h("h1", "New session"), note, form);

  function fill(spec) {
    name.input.value = spec.name || "";
    const [amount, unit] = durationParts(spec.duration_s);
    durationValue.value = amount;
    durationUnit.value = unit;
    fps.input.value = spec.target_fps ?? "";
    segMode.value = spec.fragment_hourly ? "hourly" : spec.segment_minutes ? "minutes" : "default";
    minutes.input.value = spec.segment_minutes ?? 60;
    minutes.row.hidden = segMode.value !== "minutes";
    filter.input.checked = Boolean(spec.apply_filter);
    notes.input.value = spec.notes || "";
    const wanted = new Map(spec.enclosures.map((e) => [e.id, e.file_prefix]));
    for (const p of picks) {
      p.box.checked = wanted.has(p.id);
      if (wanted.has(p.id)) p.prefix.input.value = wanted.get(p.id);
    }
    const missing = [...wanted.keys()].filter((id) => !picks.some((p) => p.id === id));
    note.hidden = false;
    note.textContent = `Filled in from the ${spec.what}.`
      + (missing.length ? ` Not registered any more: ${missing.join(", ")}.` : "");
  }

  const picks = []; // {id, box, prefix: field}
  listAll("/api/enclosures").then(async (items) => {
    for (const e of items) {
      const box = h("input", { type: "checkbox", id: `pick-${e.id}`, value: e.id, dataset: { pick: e.id } });
      const prefix = field(`File prefix for ${displayName(e.id, e.name)}`, h("input", { value: "mouse", dataset: { prefix: e.id }, maxlength: 64 }));
      prefix.row.classList.add("inline");
      picks.push({ id: e.id, box, prefix });
      encFieldset.append(h("div.pick",
        box, h("label", { for: box.id }, `${displayName(e.id, e.name)} `, h(`span.badge.tone-${tone(e.state)}`, stateWord(e.state))),
        prefix.row));
    }
    if (!items.length) encFieldset.append(h("p.muted", "No enclosures are registered."));
    if (kind) fill(await prefill(kind, ref));
  }).catch((err) => encFieldset.append(h("p.error-text", err.message)));

  function spec() {
    const chosen = picks.filter((p) => p.box.checked);
    return { chosen, body: {
      name: name.input.value.trim(),
      enclosures: chosen.map((p) => ({ id: p.id, file_prefix: p.prefix.input.value.trim() })),
      duration_s: Math.round(Number(durationValue.value) * DURATION_UNITS[durationUnit.value]) || 0,
      fragment_hourly: segMode.value === "hourly",
      segment_minutes: segMode.value === "minutes" ? Number(minutes.input.value) || 0 : null,
      target_fps: fps.input.value ? Number(fps.input.value) : null,
      apply_filter: filter.input.checked,
      start_at: startAt.input.value ? new Date(startAt.input.value).toISOString() : null,
      notes: notes.input.value.trim() || null,
      allow_offline: allowOffline.input.checked,
    } };
  }

  function fieldsOf(chosen) {
    const fields = {
      name, enclosures, duration_s: duration, target_fps: fps, fragment_hourly: segmentation,
      segment_minutes: minutes, start_at: startAt, notes, allow_offline: allowOffline, apply_filter: filter,
    };
    chosen.forEach((p, i) => { fields[`enclosures.${i}.file_prefix`] = p.prefix; fields[`enclosures.${i}.id`] = enclosures; });
    return fields;
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    const { chosen, body } = spec();
    submit.disabled = true;
    try {
      const created = await api("POST", "/api/sessions", body);
      location.hash = `#/sessions/${encodeURIComponent(created.id)}`;
    } catch (err) {
      showErrors(form, err, fieldsOf(chosen));
    } finally {
      submit.disabled = false;
    }
  });

  // The same enclosures, prefixes, duration and settings, kept under the session's name.
  saveTemplate.addEventListener("click", async () => {
    clearErrors(form);
    const { chosen, body } = spec();
    const { start_at: _s, allow_offline: _a, ...template } = body;
    saveTemplate.disabled = true;
    try {
      const saved = await api("POST", "/api/session-templates", template);
      note.hidden = false;
      note.textContent = `Saved as template "${saved.name}": start it again from the Sessions page.`;
    } catch (err) {
      showErrors(form, err, fieldsOf(chosen));
    } finally {
      saveTemplate.disabled = false;
    }
  });
  name.input.focus();
  return null;
}

// --- one session -----------------------------------------------------------------------------

export function sessionPage(main, id) {
  const head = h("div");
  const encBody = h("div.enc-progress");
  const segBody = h("tbody");
  const message = h("p.notice", { role: "status", hidden: true });
  const coverage = h("div.coverage", { dataset: { testid: "coverage" } });
  clear(main, h("p.crumbs", h("a", { href: "#/sessions" }, "Sessions"), " / ", id),
    head, message,
    h("section.panel", { "aria-labelledby": "enc-h" }, h("h2#enc-h", "Enclosures"), encBody),
    h("section.panel", { "aria-labelledby": "cov-h" }, h("h2#cov-h", "Coverage"),
      h("p.coverage-legend",
        h("span", h("span.rec-span.rec-recorded"), "closed files"),
        h("span", h("span.rec-span.rec-recording"), "file being written"),
        h("span", h("span.rec-span.rec-gap"), "gap")),
      coverage),
    h("section.panel", { "aria-labelledby": "seg-h" }, h("h2#seg-h", "Segments"),
      h("div.table-wrap", h("table.data",
        h("thead", h("tr", ["Enclosure", "File", "From", "To", "Frames", "Size", "SHA-256"].map((c) => h("th", { scope: "col" }, c)))),
        segBody))));

  async function act(path, what) {
    try {
      await api("POST", path);
      message.hidden = false;
      message.textContent = `${what}.`;
      await load();
    } catch (err) {
      message.hidden = false;
      message.textContent = `Could not ${what.toLowerCase()}: ${err.message}`;
    }
  }

  const members = new Set();
  const names = new Map(); // enclosure id -> display name
  function render(s) {
    members.clear();
    s.enclosures.forEach((e) => { members.add(e.enclosure_id); names.set(e.enclosure_id, displayName(e.enclosure_id, e.enclosure_name)); });
    const terminal = !ACTIVE.has(s.status);
    const lost = s.enclosures.filter((e) => e.lost);
    clear(head,
      h("div.page-head", h("h1", s.name), h(`span.badge.tone-${tone(s.status)}`, { dataset: { testid: "status" } },
        stateWord(s.status)), s.archived ? h("span.badge.tone-none", "Archived") : null),
      h("dl.facts.wide",
        h("dt", "Id"), h("dd", s.id),
        h("dt", "Start"), h("dd", fmtTime(s.start_at)),
        h("dt", "End"), h("dd", fmtTime(s.end_at)),
        h("dt", "Duration"), h("dd", fmtDuration(s.duration_s)),
        h("dt", "Frame rate"), h("dd", s.target_fps ? `${s.target_fps} fps` : "agent default"),
        h("dt", "Files"), h("dd", s.fragment_hourly ? "hourly" : s.segment_minutes ? `every ${s.segment_minutes} min` : "agent default"),
        h("dt", "Filter"), h("dd", s.apply_filter ? "on" : "off"),
        h("dt", "Recorded"), h("dd", { dataset: { testid: "total-recorded" } },
          `${fmtDuration(s.totals.recorded_s)} · ${fmtNumber(s.totals.frames)} frames · ${fmtBytes(s.totals.bytes)} · ${closedFiles(s.totals.segments)}`,
          h("span.muted", ` (${BASIS_WORDS[s.totals.basis] || s.totals.basis})`)),
        h("dt", "Gaps"), h("dd", { dataset: { testid: "gaps" } }, s.totals.gap_s ? fmtDuration(s.totals.gap_s)
          : lost.length ? `none closed yet; ${lost.length} lost now` : "none"),
        s.notes ? [h("dt", "Notes"), h("dd", s.notes)] : null),
      canOperate() ? h("div.buttons",
        h("a.button.secondary", { href: `#/sessions/new/like/${encodeURIComponent(id)}` }, "Start again"),
        h("button.secondary", { type: "button", onclick: async () => {
          const { enclosures: parts, name: tname, duration_s: d, fragment_hourly: fh, segment_minutes: sm,
            target_fps: tf, apply_filter: af, notes: nt } = s;
          try {
            const saved = await api("POST", "/api/session-templates", {
              name: tname, duration_s: d, fragment_hourly: fh, segment_minutes: sm, target_fps: tf,
              apply_filter: af, notes: nt,
              enclosures: parts.map((e) => ({ id: e.enclosure_id, file_prefix: e.file_prefix })),
            });
            message.hidden = false;
            message.textContent = `Saved as template "${saved.name}".`;
          } catch (err) {
            message.hidden = false;
            message.textContent = `Could not save it as a template: ${err.message}`;
          }
        } }, "Save as template"),
        !terminal ? h("button.danger", { type: "button", onclick: async () => {
          const sure = await confirmDialog({
            title: "Cancel the session?",
            message: `Every enclosure of "${s.name}" stops recording. What was recorded stays.`,
            confirmLabel: "Cancel session",
            cancelLabel: "Keep recording",
          });
          if (sure) act(`/api/sessions/${id}/cancel`, "Session canceled");
        } }, "Cancel session") : null,
        terminal && !s.archived ? h("button.secondary", { type: "button",
          onclick: () => act(`/api/sessions/${id}/archive`, "Session archived") }, "Archive") : null) : null);

    clear(encBody, s.enclosures.map((e) => {
      const done = ["completed", "failed", "canceled", "timed_out"].includes(e.state);
      // A lost enclosure shows as such at once: its state in the session only changes when the
      // grace period ends (timed out), but nobody should read "Recording" meanwhile.
      const shown = e.lost ? "lost" : e.state;
      const label = displayName(e.enclosure_id, e.enclosure_name);
      return h(`article.enc-row.tone-${e.lost ? "bad" : tone(e.state)}`, { dataset: { enclosure: e.enclosure_id, state: shown } },
        h("div.enc-row-head",
          h("h3", h("a", { href: `#/enclosures/${e.enclosure_id}` }, label)),
          h(`span.badge.tone-${e.lost ? "bad" : tone(e.state)}`, { dataset: { testid: "state" } }, stateWord(shown)),
          e.enclosure_state && !e.lost ? h("span.muted.small", `enclosure ${stateWord(e.enclosure_state).toLowerCase()}`) : null,
          canOperate() && !done && !terminal ? h("button.secondary.small", { type: "button", onclick: async () => {
            const sure = await confirmDialog({
              title: `Stop ${e.enclosure_id}?`,
              message: `${e.enclosure_id} stops recording in this session; the other enclosures go on.`,
              confirmLabel: `Stop ${e.enclosure_id}`,
              cancelLabel: "Keep recording",
            });
            if (sure) act(`/api/sessions/${id}/enclosures/${e.enclosure_id}/cancel`, `${e.enclosure_id} canceled`);
          } }, `Cancel ${e.enclosure_id}`) : null),
        progressBar(e.progress.recorded_s / s.duration_s, `recorded share of ${e.enclosure_id}`),
        h("p.small", { dataset: { testid: "recorded" } },
          `${progressDetail(e.progress, s.duration_s)} · prefix ${e.file_prefix}`),
        e.message ? h(`p.small${e.state === "failed" || e.state === "timed_out" ? ".error-text" : ""}`, e.message) : null,
        e.lost ? h("p.small.error-text", { dataset: { testid: "lost" } }, lostWords(e)) : null,
        e.gaps.length ? h("details", h("summary", `${e.gaps.length} gaps, ${fmtDuration(e.gap_s)} not recorded`),
          h("ul", e.gaps.map((g) => h("li", `${fmtTime(g.started_at)} → ${fmtTime(g.ended_at)}: ${fmtDuration(g.gap_s)} (${g.cause.replaceAll("_", " ")})`)))) : null);
    }));
  }

  // One strip per enclosure over the session's window: closed files, the file being written
  // (while its figures are live) and the gaps, from the data this page already has.
  function renderCoverage(s, segs) {
    const start = Date.parse(s.start_at);
    const width = Math.max(1, Date.parse(s.end_at) - start);
    const at = (iso) => Math.min(100, Math.max(0, (100 * (Date.parse(iso) - start)) / width));
    const span = (kind, from, to, title) => {
      const bar = h(`span.rec-span.rec-${kind}`, { title });
      bar.style.left = `${at(from)}%`;
      bar.style.width = `${Math.max(0.3, at(to) - at(from))}%`;
      return bar;
    };
    clear(coverage, s.enclosures.map((e) => {
      const mine = segs.filter((g) => g.enclosure_id === e.enclosure_id);
      const bars = mine.map((g) => span("recorded", g.started_at, g.ended_at, `${fmtTime(g.started_at)} – ${fmtTime(g.ended_at)}`));
      const last = mine.reduce((t, g) => (g.ended_at > t ? g.ended_at : t), e.confirmed_at || s.start_at);
      if (e.progress.basis === "live" && e.progress.last_frame_at && e.progress.last_frame_at > last) {
        bars.push(span("recording", last, e.progress.last_frame_at, "the file being written"));
      }
      for (const g of e.gaps) bars.push(span("gap", g.started_at, g.ended_at, `gap: ${g.cause.replaceAll("_", " ")}`));
      const label = names.get(e.enclosure_id) || e.enclosure_id;
      const words = `${label}: ${mine.length} closed files, ${fmtDuration(e.progress.recorded_s)} recorded, `
        + (e.gaps.length ? `${e.gaps.length} gaps (${fmtDuration(e.gap_s)})` : "no gap");
      return h("div.coverage-row", { dataset: { enclosure: e.enclosure_id } },
        h("span.small", label),
        h("div.rec-strip", { role: "img", "aria-label": words }, bars));
    }));
  }

  let current = null;
  async function loadSegments() {
    const page = await api("GET", `/api/sessions/${id}/recordings`, undefined, { query: { limit: 200 } });
    if (current) renderCoverage(current, page.items);
    clear(segBody, page.items.length ? page.items.map((g) => h("tr",
      h("td", names.get(g.enclosure_id) || g.enclosure_id), h("td.path", g.path), h("td", fmtTime(g.started_at)), h("td", fmtTime(g.ended_at)),
      h("td", fmtNumber(g.frames)), h("td", fmtBytes(g.bytes)), h("td.hash", { title: g.sha256 }, `${g.sha256.slice(0, 12)}…`)))
      : h("tr", h("td", { colspan: 7, class: "muted" }, "No closed segment yet.")));
    if (page.next_cursor) segBody.append(h("tr", h("td", { colspan: 7, class: "muted" }, "Showing the first 200 segments.")));
  }

  async function load() {
    try {
      current = await api("GET", `/api/sessions/${id}`);
      render(current);
      await loadSegments();
    } catch (err) {
      clear(head, h("h1", id), h("p.error-text", { role: "alert" },
        err.status === 404 ? "No session has this id." : `Could not load it: ${err.message}`));
    }
  }
  const reload = debounce(load, 250);
  const mine = ({ session_id: sid, data }) => (sid || data?.session_id) === id && reload();
  const off = [
    events.on("session.progress", mine),
    events.on("session.state", mine),
    events.on("enclosure.state", ({ data }) => members.has(data.enclosure_id) && reload()),
  ];
  load();
  return () => { off.forEach((f) => f()); reload.cancel(); };
}
