// Words, colours and units shown to people.

export const ENCLOSURE_STATES = ["recording", "idle", "error", "lost", "offline"];

const STATE_WORDS = {
  offline: "Offline", lost: "Lost", idle: "Idle", recording: "Recording", error: "Error",
  pending: "Pending", starting: "Starting", completed: "Completed", failed: "Failed",
  canceled: "Canceled", timed_out: "Timed out", scheduled: "Scheduled", running: "Running",
  completed_with_failures: "Completed with failures",
  sent: "Sent", accepted: "Accepted", rejected: "Rejected", succeeded: "Succeeded",
  expired: "Expired", invited: "Invited", active: "Active", disabled: "Disabled",
};
// Colour families (app.css): ok, info, warn, bad, none.
const STATE_TONES = {
  recording: "ok", idle: "info", error: "bad", lost: "warn", offline: "none",
  pending: "none", starting: "info", completed: "ok", failed: "bad", canceled: "none",
  timed_out: "warn", scheduled: "info", running: "ok", completed_with_failures: "warn",
  sent: "info", accepted: "info", rejected: "bad", succeeded: "ok", expired: "warn",
  invited: "info", active: "ok", disabled: "none",
};

export function stateWord(state) {
  return STATE_WORDS[state] || String(state ?? "unknown");
}

export function tone(state) {
  return STATE_TONES[state] || "none";
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(Number(seconds))) return "–";
  let s = Math.round(Number(seconds));
  const d = Math.floor(s / 86400); s -= d * 86400;
  const hh = Math.floor(s / 3600); s -= hh * 3600;
  const mm = Math.floor(s / 60); s -= mm * 60;
  if (d) return `${d} d ${hh} h`;
  if (hh) return `${hh} h ${mm} min`;
  if (mm) return `${mm} min ${s} s`;
  return `${s} s`;
}

export function fmtBytes(bytes) {
  if (bytes === null || bytes === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = Number(bytes);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${v.toFixed(i && v < 10 ? 1 : 0)} ${units[i]}`;
}

export function fmtTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toLocaleString(undefined, {
    year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
}

export function fmtAgo(iso) {
  if (!iso) return "never";
  const s = (Date.now() - new Date(iso).getTime()) / 1000;
  if (!Number.isFinite(s)) return "–";
  if (s < 5) return "just now";
  return `${fmtDuration(Math.max(0, s))} ago`;
}

export function fmtNumber(v, digits = 0) {
  if (v === null || v === undefined || !Number.isFinite(Number(v))) return "–";
  return Number(v).toLocaleString(undefined, {
    minimumFractionDigits: digits, maximumFractionDigits: digits,
  });
}

/** Health figures of a status heartbeat (null when the enclosure never reported one). */
export function health(status) {
  if (!status) return null;
  const sys = status.system || {};
  const cam = status.camera || {};
  const clock = status.clock || {};
  const diskPct = sys.disk_total_bytes ? (100 * sys.disk_free_bytes) / sys.disk_total_bytes : null;
  let clockWord = "unknown";
  let clockTone = "none";
  const offsetKnown = clock.offset_s !== null && clock.offset_s !== undefined;
  if (clock.skewed) {
    clockWord = `skewed ${fmtNumber(clock.offset_s, 2)} s`; clockTone = "bad";
  } else if (clock.ntp_synchronized === true) {
    clockWord = "synced"; clockTone = "ok";
  } else if (offsetKnown) {
    // Without NTP, but agreeing with the service's clock within the tolerance: not a problem.
    clockWord = "within tolerance"; clockTone = "ok";
  } else if (clock.ntp_synchronized === false) {
    clockWord = "not synced"; clockTone = "warn";
  }
  if (!clock.skewed && offsetKnown) {
    clockWord += ` (${fmtNumber(clock.offset_s * 1000, 0)} ms)`;
  }
  return {
    diskPct,
    diskTone: diskPct === null ? "none" : diskPct < 10 ? "bad" : diskPct < 20 ? "warn" : "ok",
    diskFree: sys.disk_free_bytes,
    load: sys.load_1,
    clockWord,
    clockTone,
    fps: cam.measured_fps,
    targetFps: cam.target_fps,
    frames: cam.frames_written,
    cameraConnected: cam.connected,
    recording: status.recording || null,
    lastError: status.last_error || cam.error || null,
  };
}
