// A small time-series line chart as inline SVG (no library): one series per chart.

const NS = "http://www.w3.org/2000/svg";
const W = 600;
const H = 160;
const PAD = { left: 44, right: 10, top: 10, bottom: 22 };

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/**
 * lineChart({title, unit, points: [[Date, number|null]], max?}) -> <figure>.
 * The returned element has .update(points) to redraw in place.
 */
export function lineChart({ title, unit, points, max, cls = "" }) {
  const figure = document.createElement("figure");
  figure.className = `chart ${cls}`;
  const caption = document.createElement("figcaption");
  const root = svg("svg", {
    viewBox: `0 0 ${W} ${H}`, role: "img", preserveAspectRatio: "none", class: "chart-svg",
  });
  figure.append(caption, root);

  function draw(data) {
    root.replaceChildren();
    const pts = data.filter(([t, v]) => t instanceof Date && v !== null && Number.isFinite(v));
    const latest = pts.length ? pts[pts.length - 1][1] : null;
    caption.textContent = `${title}: ${latest === null ? "no data" : `${latest.toFixed(latest < 10 ? 2 : 1)} ${unit}`}`;
    root.setAttribute("aria-label", `${title} over time, ${pts.length} points, latest ${latest ?? "none"} ${unit}`);
    const x0 = PAD.left;
    const x1 = W - PAD.right;
    const y0 = H - PAD.bottom;
    const y1 = PAD.top;
    const top = max ?? niceMax(Math.max(...pts.map((p) => p[1]), 0) * 1.1);
    root.append(svg("line", { x1: x0, y1: y0, x2: x1, y2: y0, class: "axis" }));
    for (const frac of [0, 0.5, 1]) {
      const y = y0 - frac * (y0 - y1);
      root.append(svg("line", { x1: x0, y1: y, x2: x1, y2: y, class: "grid" }));
      root.append(svg("text", { x: x0 - 4, y: y + 4, class: "tick", "text-anchor": "end" },
        `${+(top * frac).toFixed(2)}`));
    }
    if (pts.length < 2) {
      root.append(svg("text", { x: (x0 + x1) / 2, y: (y0 + y1) / 2, class: "empty", "text-anchor": "middle" },
        pts.length ? "waiting for more data…" : "no data yet"));
      return;
    }
    const t0 = pts[0][0].getTime();
    const t1 = Math.max(pts[pts.length - 1][0].getTime(), t0 + 1);
    const sx = (t) => x0 + ((t.getTime() - t0) / (t1 - t0)) * (x1 - x0);
    const sy = (v) => y0 - (Math.min(v, top) / top) * (y0 - y1);
    const d = pts.map(([t, v], i) => `${i ? "L" : "M"}${sx(t).toFixed(1)},${sy(v).toFixed(1)}`).join("");
    root.append(svg("path", { d: `${d}L${sx(pts[pts.length - 1][0]).toFixed(1)},${y0}L${x0},${y0}Z`, class: "area" }));
    root.append(svg("path", { d, class: "line" }));
    const fmt = (t) => t.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
    root.append(svg("text", { x: x0, y: H - 6, class: "tick" }, fmt(pts[0][0])));
    root.append(svg("text", { x: x1, y: H - 6, class: "tick", "text-anchor": "end" },
      fmt(pts[pts.length - 1][0])));
  }

  draw(points || []);
  figure.update = draw;
  return figure;
}
