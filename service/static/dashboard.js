// agvp-hpo dashboard: plain JavaScript and SVG, no library. Reads the REST API of the same origin and
// refreshes every few seconds while the selected study runs.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#1565c0", "#c62828", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#8d6e00", "#ad1457"];
let selected = null;
let timer = null;

async function getJSON(url) {
  const response = await fetch(url);
  if (!response.ok) {
    throw new Error(`${url}: ${response.status}`);
  }
  return response.json();
}

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (parent) parent.appendChild(node);
  return node;
}

function text(parent, x, y, content, anchor) {
  const node = el("text", { x, y, "text-anchor": anchor || "start" }, parent);
  node.textContent = content;
  return node;
}

function clear(svg) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
}

function fmt(value, digits) {
  if (value === null || value === undefined || Number.isNaN(value)) return "-";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toPrecision(digits || 4);
  return String(value);
}

function when(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleString() : "-";
}

function scale(domain, range) {
  const [d0, d1] = domain[0] === domain[1] ? [domain[0] - 1, domain[1] + 1] : domain;
  return (v) => range[0] + ((v - d0) / (d1 - d0)) * (range[1] - range[0]);
}

function axes(svg, box, xDomain, yDomain, xLabel, yLabel) {
  el("line", { x1: box.x0, y1: box.y1, x2: box.x1, y2: box.y1, stroke: "#9aa1ab" }, svg);
  el("line", { x1: box.x0, y1: box.y0, x2: box.x0, y2: box.y1, stroke: "#9aa1ab" }, svg);
  text(svg, box.x0, box.y1 + 14, fmt(xDomain[0]), "middle");
  text(svg, box.x1, box.y1 + 14, fmt(xDomain[1]), "middle");
  text(svg, (box.x0 + box.x1) / 2, box.y1 + 26, xLabel, "middle");
  text(svg, box.x0 - 4, box.y1, fmt(yDomain[0], 3), "end");
  text(svg, box.x0 - 4, box.y0 + 8, fmt(yDomain[1], 3), "end");
  text(svg, box.x0 - 4, box.y0 - 6, yLabel, "start");
}

function linePath(points, sx, sy) {
  return points.map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
}

function drawBestSoFar(svg, detail) {
  clear(svg);
  const points = (detail.best_so_far || []).map((p) => [p.total_resource, p.value]);
  const box = { x0: 50, x1: 505, y0: 20, y1: 265 };
  if (!points.length) {
    text(svg, 260, 150, "no results yet", "middle");
    return;
  }
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  const xDomain = [0, Math.max(...xs)];
  const yDomain = [Math.min(...ys), Math.max(...ys)];
  const sx = scale(xDomain, [box.x0, box.x1]);
  const sy = scale(yDomain, [box.y1, box.y0]);
  axes(svg, box, xDomain, yDomain, "epochs used by all trials", detail.metric);
  // a step line: the best stays until the next improvement
  const steps = [];
  points.forEach((p, i) => {
    if (i) steps.push([p[0], points[i - 1][1]]);
    steps.push(p);
  });
  el("path", { d: linePath(steps, sx, sy), fill: "none", stroke: "#1565c0", "stroke-width": 2, class: "best-line" }, svg);
  points.forEach((p) => el("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 2.5, fill: "#1565c0" }, svg));
}

function drawCurves(svg, curves, metric) {
  clear(svg);
  const box = { x0: 50, x1: 505, y0: 20, y1: 265 };
  const all = curves.flatMap((c) => c.points.filter((p) => p.value !== null));
  if (!all.length) {
    text(svg, 260, 150, "no results yet", "middle");
    return;
  }
  const xDomain = [0, Math.max(...all.map((p) => p.resource))];
  const yDomain = [Math.min(...all.map((p) => p.value)), Math.max(...all.map((p) => p.value))];
  const sx = scale(xDomain, [box.x0, box.x1]);
  const sy = scale(yDomain, [box.y1, box.y0]);
  axes(svg, box, xDomain, yDomain, "epochs", metric);
  const brackets = [...new Set(curves.map((c) => c.bracket))].sort((a, b) => a - b);
  for (const c of curves) {
    const pts = c.points.filter((p) => p.value !== null).map((p) => [p.resource, p.value]);
    if (!pts.length) continue;
    const color = PALETTE[brackets.indexOf(c.bracket) % PALETTE.length];
    const path = el("path", { d: linePath(pts, sx, sy), fill: "none", stroke: color, "stroke-width": 1.2,
      "stroke-opacity": 0.8, class: "curve", "data-trial": c.trial_id }, svg);
    el("title", {}, path).textContent = `trial ${c.trial_id} (bracket ${c.bracket})`;
    const last = pts[pts.length - 1];
    el("circle", { cx: sx(last[0]), cy: sy(last[1]), r: 2, fill: color }, svg);
  }
  brackets.forEach((b, i) => {
    el("rect", { x: box.x1 - 90, y: box.y0 + i * 13, width: 9, height: 9, fill: PALETTE[i % PALETTE.length] }, svg);
    text(svg, box.x1 - 77, box.y0 + 8 + i * 13, `bracket ${b}`);
  });
}

function drawParallel(svg, trials, metric, mode, space) {
  clear(svg);
  const rows = trials.filter((t) => t.value !== null);
  if (!rows.length) {
    text(svg, 530, 160, "no results yet", "middle");
    return;
  }
  const names = [...new Set(rows.flatMap((t) => Object.keys(t.params)))].sort();
  const axesList = names.map((name) => {
    const values = rows.map((t) => t.params[name]);
    const numeric = values.every((v) => typeof v === "number");
    if (numeric) {
      // log axes where the study declares a log-uniform range (and every value is positive)
      const declared = (space[name] || {}).log === true;
      const log = declared && values.every((v) => v > 0);
      const f = log ? (v) => Math.log10(v) : (v) => v;
      const mapped = values.map(f);
      return { name, position: (v) => f(v), domain: [Math.min(...mapped), Math.max(...mapped)], log };
    }
    const levels = [...new Set(values.map(String))].sort();
    return { name, position: (v) => levels.indexOf(String(v)), domain: [0, Math.max(levels.length - 1, 1)], levels };
  });
  const values = rows.map((t) => t.value);
  axesList.push({ name: metric, position: (v) => v, domain: [Math.min(...values), Math.max(...values)], objective: true });
  const top = 30;
  const bottom = 285;
  const step = 900 / Math.max(axesList.length - 1, 1);
  const x = (i) => 80 + i * step;
  const better = scale([Math.min(...values), Math.max(...values)], mode === "max" ? [0.15, 1] : [1, 0.15]);
  for (const t of rows) {
    const pts = axesList.map((axis, i) => {
      const raw = axis.objective ? t.value : t.params[axis.name];
      const s = scale(axis.domain, [bottom, top]);
      return [x(i), raw === undefined ? bottom : s(axis.position(raw))];
    });
    const d = pts.map((p, i) => `${i ? "L" : "M"}${p[0].toFixed(1)},${p[1].toFixed(1)}`).join(" ");
    const path = el("path", { d, fill: "none", stroke: "#1565c0", "stroke-opacity": better(t.value).toFixed(2),
      "stroke-width": 1.2, class: "parallel-line", "data-trial": t.trial_id }, svg);
    el("title", {}, path).textContent = `trial ${t.trial_id}: ${fmt(t.value)}`;
  }
  axesList.forEach((axis, i) => {
    el("line", { x1: x(i), y1: top, x2: x(i), y2: bottom, stroke: "#4b5563" }, svg);
    text(svg, x(i), top - 12, axis.name + (axis.log ? " (log)" : ""), "middle");
    const lo = axis.levels ? axis.levels[0] : fmt(axis.log ? 10 ** axis.domain[0] : axis.domain[0], 3);
    const hi = axis.levels ? axis.levels[axis.levels.length - 1] : fmt(axis.log ? 10 ** axis.domain[1] : axis.domain[1], 3);
    text(svg, x(i) + 3, bottom + 12, lo, "middle");
    text(svg, x(i) + 3, top - 2, hi, "middle");
  });
}

function fillTrials(table, trials) {
  const body = table.querySelector("tbody");
  body.replaceChildren();
  for (const t of trials) {
    const row = body.insertRow();
    row.dataset.trial = t.trial_id;
    const params = Object.entries(t.params).map(([k, v]) => `${k}=${fmt(v, 3)}`).join(", ");
    for (const cell of [t.trial_id, t.status, t.bracket, t.resource, fmt(t.value), params]) {
      row.insertCell().textContent = cell;
    }
  }
}

async function loadStudies() {
  const studies = await getJSON("/api/studies");
  const body = document.querySelector("#studies tbody");
  body.replaceChildren();
  for (const s of studies) {
    const row = body.insertRow();
    row.dataset.study = s.id;
    if (s.id === selected) row.classList.add("selected");
    const trials = Object.entries(s.trials).filter(([, n]) => n).map(([k, n]) => `${n} ${k}`).join(", ");
    const cells = [s.id, s.status, trials || "-", s.best ? fmt(s.best.value) : "-", fmt(s.budget_used.epochs), when(s.updated)];
    cells.forEach((c, i) => {
      const cell = row.insertCell();
      cell.textContent = c;
      if (i === 1) cell.className = `status-${s.status}`;
    });
    row.addEventListener("click", () => selectStudy(s.id));
  }
  if (!selected && studies.length) {
    const fromHash = decodeURIComponent(location.hash.slice(1));
    selected = studies.some((s) => s.id === fromHash) ? fromHash : studies[0].id;
    body.querySelector(`tr[data-study="${CSS.escape(selected)}"]`)?.classList.add("selected");
  }
  return studies;
}

function showFailures(list, failures) {
  list.replaceChildren();
  list.hidden = failures.count === 0;
  if (failures.count === 0) return;
  const head = document.createElement("li");
  head.className = "failed";
  head.textContent = `${failures.count} trial(s) failed; first errors:`;
  list.append(head);
  for (const error of failures.errors) {
    const item = document.createElement("li");
    item.textContent = `${error.trials} x ${error.message}`;
    list.append(item);
  }
}

async function loadStudy(id) {
  const base = `/api/studies/${encodeURIComponent(id)}`;
  const [detail, page, curves] = await Promise.all([
    getJSON(base),
    getJSON(`${base}/trials?limit=1000&sort=value&order=${"desc"}`),
    getJSON(`${base}/curves?limit=500`),
  ]);
  document.querySelector("#study").hidden = false;
  document.querySelector("#study-title").textContent = `Study ${id}`;
  const used = detail.budget_used || {};
  document.querySelector("#study-line").textContent =
    `${detail.status}${detail.reason ? ` (${detail.reason})` : ""}; ${page.total} trials; ` +
    `${fmt(used.epochs)} epochs used; best ${detail.metric} ${detail.best ? fmt(detail.best.value) : "-"}`;
  showFailures(document.querySelector("#failures"), detail.failures || { count: 0, errors: [] });
  drawBestSoFar(document.querySelector("#best-plot"), detail);
  drawCurves(document.querySelector("#curves-plot"), curves, detail.metric);
  const space = (detail.spec && detail.spec.space) || {};
  drawParallel(document.querySelector("#parallel-plot"), page.items, detail.metric, detail.mode, space);
  fillTrials(document.querySelector("#trials"), page.items);
  document.body.dataset.loaded = id;
  return detail;
}

async function selectStudy(id) {
  selected = id;
  location.hash = encodeURIComponent(id);
  document.querySelectorAll("#studies tbody tr").forEach((r) => r.classList.toggle("selected", r.dataset.study === id));
  await refresh();
}

async function refresh() {
  if (timer) clearTimeout(timer);
  let running = false;
  try {
    const health = await getJSON("/api/health");
    document.querySelector("#health").textContent = `${health.studies} studies in ${health.store}`;
    const studies = await loadStudies();
    if (selected) {
      const detail = await loadStudy(selected);
      running = detail.status === "running";
    } else {
      running = studies.some((s) => s.status === "running");
    }
  } catch (error) {
    document.querySelector("#health").textContent = `cannot reach the service: ${error.message}`;
  }
  timer = setTimeout(refresh, running ? 3000 : 15000);
}

refresh();
