// Bulk commands on a selection of enclosures: sent in batches to POST /api/commands/bulk,
// each enclosure's result followed from the command acks on the event stream.

import { api } from "./api.js";
import * as events from "./events.js";
import { stateWord } from "./format.js";

// Kinds the fleet view sends to many enclosures at once (as the API allows).
export const BULK_KINDS = { ping: "Ping", restart_agent: "Restart agent" };
// Enclosures per request: results start to show while later batches are still being sent.
const BATCH = 100;
const TERMINAL = new Set(["rejected", "succeeded", "failed", "expired", "timed_out"]);
// command.updated records seen for commands whose POST has not answered yet (the ack can
// overtake the answer); bounded.
const EARLY_MAX = 10000;

/**
 * Tracks the results of bulk commands. `onResult(eid)` is called whenever an enclosure's
 * result changes (to redraw its card or row), `onSummary()` when the totals change.
 */
export function bulkResults({ onResult, onSummary }) {
  const results = new Map(); // eid -> {kind, state, detail, commandId}
  const byCommand = new Map(); // command id -> eid
  const early = new Map(); // command id -> record
  let inFlight = 0;

  function settle(eid, record) {
    const current = results.get(eid);
    if (!current || current.commandId !== record.id) return;
    if (TERMINAL.has(current.state) && !TERMINAL.has(record.state)) return; // never go back
    current.state = record.state;
    current.detail = record.detail || null;
    onResult(eid);
    onSummary();
  }

  const off = events.on("command.updated", ({ data }) => {
    if (!data?.id) return;
    const eid = byCommand.get(data.id);
    if (eid) { settle(eid, data); return; }
    if (inFlight > 0) {
      if (early.size >= EARLY_MAX) early.delete(early.keys().next().value);
      early.set(data.id, data);
    }
  });

  async function send(kind, ids, timeout_s = 30) {
    for (const eid of ids) results.set(eid, { kind, state: "queued", detail: null, commandId: null });
    ids.forEach(onResult);
    onSummary();
    inFlight += 1;
    try {
      for (let i = 0; i < ids.length; i += BATCH) {
        const batch = ids.slice(i, i + BATCH);
        let body;
        try {
          body = await api("POST", "/api/commands/bulk", { kind, enclosure_ids: batch, timeout_s });
        } catch (err) {
          for (const eid of batch) results.set(eid, { kind, state: "error", detail: err.message, commandId: null });
          batch.forEach(onResult);
          onSummary();
          continue;
        }
        for (const item of body.items) {
          const cmd = item.command;
          if (!cmd) {
            results.set(item.enclosure_id, { kind, state: "error", detail: item.problem?.detail || item.problem?.title || "not sent", commandId: null });
          } else {
            results.set(item.enclosure_id, { kind, state: cmd.state, detail: cmd.detail || null, commandId: cmd.id });
            byCommand.set(cmd.id, item.enclosure_id);
            const seen = early.get(cmd.id);
            if (seen) { early.delete(cmd.id); settle(item.enclosure_id, seen); }
          }
          onResult(item.enclosure_id);
        }
        onSummary();
      }
    } finally {
      inFlight -= 1;
      if (!inFlight) early.clear();
    }
  }

  /** Counts per result state of the latest bulk results, e.g. {succeeded: 40, sent: 2}. */
  function totals() {
    const t = {};
    for (const r of results.values()) t[r.state] = (t[r.state] || 0) + 1;
    return t;
  }

  function clearResults() {
    const ids = [...results.keys()];
    results.clear();
    byCommand.clear();
    ids.forEach(onResult);
    onSummary();
  }

  return { results, send, totals, clear: clearResults, stop: off };
}

export function resultWord(r) {
  if (r.state === "queued") return "queued";
  if (r.state === "error") return "not sent";
  return stateWord(r.state).toLowerCase();
}

export function resultTone(r) {
  if (r.state === "succeeded") return "ok";
  if (["rejected", "failed", "expired", "timed_out", "error"].includes(r.state)) return "bad";
  return "info";
}
