// What an enclosure recorded in a session, in the same words on every page: the figures come
// from the API (RecordingProgress, computed in one place by the service), never from a
// heartbeat, so the fleet, the enclosure page, the session page and jaxmba-ctl agree.

import { fmtBytes, fmtDuration, fmtNumber, fmtTime } from "./format.js";

export const BASIS_WORDS = {
  live: "live: closed files and the file being written",
  evidence: "closed files only",
};

/** "6 s recorded · 89 frames" (with "of 1 h" when the session length is given). */
export function progressWords(p, durationS) {
  if (!p) return "–";
  const of = durationS ? ` of ${fmtDuration(durationS)}` : "";
  return `${fmtDuration(p.recorded_s)}${of} recorded · ${fmtNumber(p.frames)} frames`;
}

/** The longer form: files and bytes too, and where the figures come from. */
export function progressDetail(p, durationS) {
  if (!p) return "–";
  return `${progressWords(p, durationS)} · ${closedFiles(p.segments)} · ${fmtBytes(p.bytes)} (${BASIS_WORDS[p.basis] || p.basis})`;
}

export function closedFiles(n) {
  return `${n} closed file${n === 1 ? "" : "s"}`;
}

/** "Lost since 12:00:01; counts as failed at 12:01:01 unless it comes back." */
export function lostWords(part) {
  if (!part?.lost) return "";
  const since = part.lost_since ? ` since ${fmtTime(part.lost_since)}` : "";
  const fails = part.fails_at ? `; counts as failed at ${fmtTime(part.fails_at)} unless it comes back` : "";
  return `Lost${since}${fails}.`;
}

/** "Cage 7 (demo-01)", or the id alone when the name is the id. */
export function displayName(id, name) {
  return name && name !== id ? `${name} (${id})` : id;
}
