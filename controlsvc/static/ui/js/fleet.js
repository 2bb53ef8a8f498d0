// The fleet as the dashboard keeps it: one flat record per enclosure (the fields of
// GET /api/enclosures/summary), its location group, and what a live event changes in it.

import { api, listAll } from "./api.js";

export const SUMMARY_FIELDS = [
  "id", "name", "location", "state", "since", "last_seen_at", "session_id", "recorded_s",
  "frames", "disk_free_pct", "clock_offset_s", "fps", "error", "open_alerts",
];
export const NO_LOCATION = "No location";
// The agent's default clock_skew_threshold_s: beyond it the clock is called skewed.
export const CLOCK_SKEW_S = 2.0;

// An enclosure's part in a session that still counts (session_progress on the service).
const ACTIVE_IN_SESSION = new Set(["pending", "starting", "recording"]);

/** The figures of a status heartbeat, in the summary's fields. A recording's session, time and
 * frames are not among them: those are the session's (session.progress), as every page shows. */
export function statusFields(status) {
  const sys = status?.system || {};
  const cam = status?.camera || {};
  return {
    disk_free_pct: sys.disk_total_bytes ? (100 * sys.disk_free_bytes) / sys.disk_total_bytes : null,
    clock_offset_s: status?.clock?.offset_s ?? null,
    fps: cam.connected ? cam.measured_fps ?? null : null,
    error: status?.last_error || cam.error || null,
  };
}

/** A summary record from an EnclosureOut (when the summary route is not there). */
export function fromEnclosure(enc) {
  return {
    id: enc.id, name: enc.name, location: enc.location, state: enc.state,
    since: enc.state_changed_at ?? null, last_seen_at: enc.last_seen_at ?? null,
    open_alerts: 0, ...statusFields(enc.status),
    session_id: enc.session?.session_id ?? null,
    recorded_s: enc.session?.progress?.recorded_s ?? null,
    frames: enc.session?.progress?.frames ?? null,
  };
}

/** Apply a session.progress event to a record: the session's own figures while the enclosure
 * is active in it; none once it left (done, failed, canceled). Returns whether it changed. */
export function applyProgress(r, data) {
  if (ACTIVE_IN_SESSION.has(data.state)) {
    r.session_id = data.session_id;
    r.recorded_s = data.recorded_s ?? r.recorded_s;
    r.frames = data.frames ?? r.frames;
    return true;
  }
  if (r.session_id !== data.session_id) return false;
  r.session_id = null; r.recorded_s = null; r.frames = null;
  return true;
}

/** After the sessions were reloaded: records naming a session no longer running lose it. */
export function dropEndedSessions(records, activeSessions) {
  const changed = [];
  for (const r of records.values()) {
    if (r.session_id && !activeSessions.has(r.session_id)) {
      r.session_id = null; r.recorded_s = null; r.frames = null;
      changed.push(r.id);
    }
  }
  return changed;
}

/** Every enclosure as a record: one request to the summary (falls back to the paged list). */
export async function loadFleet() {
  let body;
  try {
    body = await api("GET", "/api/enclosures/summary");
  } catch (err) {
    if (err.status !== 404 && err.status !== 405) throw err;
    return (await listAll("/api/enclosures", {}, 100000)).map(fromEnclosure);
  }
  const fields = body.fields || SUMMARY_FIELDS;
  return body.rows.map((row) => Object.fromEntries(fields.map((f, i) => [f, row[i]])));
}

/** {room, rack} of a location: "/"-separated parts, room first; no room -> "No location". */
export function placeOf(location) {
  const parts = String(location || "").split("/").map((p) => p.trim()).filter(Boolean);
  return { room: parts[0] || NO_LOCATION, rack: parts.slice(1).join(" / ") };
}

const natural = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });
export const compare = (a, b) => natural.compare(a, b);

/** Records grouped by room then rack, each sorted naturally; "No location" last. */
export function groupFleet(records) {
  const rooms = new Map();
  for (const r of records) {
    const { room, rack } = placeOf(r.location);
    if (!rooms.has(room)) rooms.set(room, new Map());
    const racks = rooms.get(room);
    if (!racks.has(rack)) racks.set(rack, []);
    racks.get(rack).push(r);
  }
  const roomOrder = (a, b) => (a === NO_LOCATION) - (b === NO_LOCATION) || compare(a, b);
  return [...rooms.keys()].sort(roomOrder).map((room) => ({
    room,
    racks: [...rooms.get(room).keys()].sort(compare).map((rack) => ({
      rack, records: rooms.get(room).get(rack).sort((a, b) => compare(a.id, b.id)),
    })),
  }));
}

/** Whether a record passes the filter {state, q}. */
export function matches(r, filter) {
  if (filter.state && r.state !== filter.state) return false;
  if (!filter.q) return true;
  return [r.id, r.name, r.location].some((v) => (v || "").toLowerCase().includes(filter.q));
}
