// agvp-hpo dashboard: plain JavaScript over the REST API of the same origin, charts drawn by Apache ECharts
// (vendored in /static/vendor, no CDN). Refreshes every few seconds while the selected study runs.
// Location hash: "#STUDY" selects a study, "#STUDY/trial=N" also opens trial N's detail view.
"use strict";

/* global echarts */

const PALETTE = ["#1565c0", "#c62828", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#8d6e00", "#ad1457"];
const VIEW_MIN_TRIALS = 3; // as the server's importance: the highest fidelity at least this many trials reached
const state = { study: null, trial: null, data: null, fidelity: null, fidelityStudy: null };
let timer = null;

async function getJSON(url) {
  const response = await fetch(url);
  if (!response.ok) {
    let message = `${response.status}`;
    try {
      message = (await response.json()).message || message;
    } catch (ignored) {
      // not a JSON error body
    }
    const error = new Error(`${url}: ${message}`);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

function fmt(value, digits) {
  if (value === null || value === undefined || Number.isNaN(value)) return "-";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toPrecision(digits || 4);
  return String(value);
}

function when(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleString() : "-";
}

function $(selector) {
  return document.querySelector(selector);
}

function parseHash() {
  const [study, ...rest] = decodeURIComponent(location.hash.slice(1)).split("/");
  const match = rest.join("/").match(/trial=(\d+)/);
  return { study: study || null, trial: match ? Number(match[1]) : null };
}

function writeHash() {
  const hash = encodeURIComponent(state.study || "") + (state.trial !== null ? `/trial=${state.trial}` : "");
  if (location.hash.slice(1) !== hash) history.replaceState(null, "", `#${hash}`);
}

function chart(id) {
  const node = document.getElementById(id);
  // SVG renderer: crisp screenshots, and the drawn marks are in the DOM (the browser tests look at them)
  return echarts.getInstanceByDom(node) || echarts.init(node, null, { renderer: "svg" });
}

function draw(id, option, trials) {
  const instance = chart(id);
  instance.setOption({ animation: false, ...option }, { notMerge: true });
  const node = document.getElementById(id);
  node.dataset.trials = (trials || []).join(",");
  node.dataset.rendered = "true";
  return instance;
}

function grid() {
  return { left: 60, right: 24, top: 28, bottom: 44, containLabel: false };
}

function valueAxis(name, extra) {
  return { type: "value", name, nameLocation: "middle", nameGap: 30, scale: true, splitLine: { show: true }, ...extra };
}

function bracketColour(brackets, bracket) {
  return PALETTE[brackets.indexOf(bracket) % PALETTE.length];
}

function scored(curve) {
  return curve.points.filter((p) => p.value !== null);
}

/** Resources where at least one trial reported a value, ascending, with how many trials did. */
function fidelities(curves) {
  const counts = new Map();
  for (const c of curves) for (const r of new Set(scored(c).map((p) => p.resource))) counts.set(r, (counts.get(r) || 0) + 1);
  return [...counts.entries()].sort((a, b) => a[0] - b[0]);
}

function schedulerName(spec) {
  const scheduler = spec && spec.scheduler;
  if (!scheduler) return "-";
  return typeof scheduler === "string" ? scheduler : scheduler.kind || scheduler.name || JSON.stringify(scheduler);
}

function defaultFidelity(curves) {
  const counts = fidelities(curves);
  if (!counts.length) return null;
  const enough = counts.filter(([, n]) => n >= VIEW_MIN_TRIALS);
  if (enough.length) return enough[enough.length - 1][0];
  const most = Math.max(...counts.map(([, n]) => n));
  return counts.filter(([, n]) => n === most).pop()[0];
}

// -- panels ---------------------------------------------------------------------------------------------

function drawCurves(data, curves) {
  const { detail, rungs } = data;
  const fidelity = (detail.spec && detail.spec.fidelity) || {};
  const brackets = data.brackets;
  const all = curves.flatMap(scored);
  const maxR = all.length ? Math.max(...all.map((p) => p.resource)) : 1;
  const minR = all.length ? Math.min(...all.map((p) => p.resource)) : 1;
  const log = minR > 0 && maxR / minR >= 9; // geometric rung milestones read best on a log axis
  const milestones = [...new Set(rungs.map((r) => r.resource))].sort((a, b) => a - b);
  const lines = curves.map((c) => ({
    type: "line",
    id: `trial-${c.trial_id}`,
    name: `trial ${c.trial_id}`,
    data: scored(c).map((p) => [p.resource, p.value, c.trial_id]),
    showSymbol: false,
    lineStyle: { width: 1.2, opacity: 0.75 },
    itemStyle: { color: bracketColour(brackets, c.bracket) },
    emphasis: { focus: "series", lineStyle: { width: 2.5 } },
  }));
  // The last report of every trial, spread sideways (by trial id, deterministic) so the trials that stopped
  // at the same rung do not collapse into one dot.
  const ends = curves
    .filter((c) => scored(c).length)
    .map((c, i) => {
      const last = scored(c)[scored(c).length - 1];
      const offset = ((i % 9) - 4) / 4; // -1 .. 1
      const x = log ? last.resource * 1.12 ** offset : last.resource + offset * 0.18;
      return { value: [x, last.value, c.trial_id], itemStyle: { color: bracketColour(brackets, c.bracket) } };
    });
  const markLine = {
    silent: true,
    symbol: "none",
    lineStyle: { type: "dashed", color: "#6b7280" },
    label: { formatter: (p) => `${p.value}`, position: "end" },
    data: milestones.map((r) => ({ xAxis: r })),
  };
  const series = [
    ...lines,
    { type: "scatter", id: "last-reports", name: "last report", data: ends, symbolSize: 6, markLine, z: 3 },
  ];
  const axisMax = Math.max(maxR, fidelity.max || 0);
  return draw(
    "chart-curves",
    {
      grid: grid(),
      tooltip: {
        trigger: "item",
        formatter: (p) => `trial ${p.value[2]}<br>epoch ${fmt(p.value[0], 3)}: ${fmt(p.value[1])}`,
      },
      xAxis: log
        ? { type: "log", name: "epochs (log)", nameLocation: "middle", nameGap: 28, min: minR / 1.25, max: axisMax * 1.25,
          splitLine: { show: true }, minorTick: { show: true }, minorSplitLine: { show: true, lineStyle: { opacity: 0.4 } },
          axisLabel: { showMinLabel: false, showMaxLabel: false, formatter: (v) => fmt(Number(v.toPrecision(3))) } }
        : valueAxis("epochs", { scale: false, min: 0, max: axisMax + 0.5, nameGap: 28 }),
      yAxis: valueAxis(detail.metric),
      dataZoom: [{ type: "inside", xAxisIndex: 0 }, { type: "inside", yAxisIndex: 0 }],
      series,
    },
    curves.filter((c) => scored(c).length).map((c) => c.trial_id),
  );
}

function drawBest(detail) {
  const points = (detail.best_so_far || []).map((p) => [p.total_resource, p.value]);
  draw("chart-best", {
    grid: grid(),
    tooltip: { trigger: "axis" },
    xAxis: valueAxis("epochs used by all trials", { scale: false, min: 0, nameGap: 28 }),
    yAxis: valueAxis(detail.metric),
    series: [{ type: "line", id: "best", name: "best so far", step: "end", data: points, symbolSize: 5, lineStyle: { width: 2 } }],
    graphic: points.length ? [] : [{ type: "text", left: "center", top: "middle", style: { text: "no results yet" } }],
  });
}

function drawParallel(data, curves, at) {
  const { detail } = data;
  const space = (detail.spec && detail.spec.space) || {};
  const rows = curves
    .map((c) => ({ c, point: scored(c).find((p) => p.resource === at) }))
    .filter((r) => r.point);
  if (!rows.length) {
    const text = at === null ? "no results yet" : `no trial shown reported at ${at} epochs`;
    draw("chart-parallel", { graphic: [{ type: "text", left: "center", top: "middle", style: { text } }] }, []);
    return;
  }
  const names = [...new Set(rows.flatMap((r) => Object.keys(r.c.params)))].sort();
  const axes = names.map((name, dim) => {
    const values = rows.map((r) => r.c.params[name]).filter((v) => v !== undefined && v !== null);
    if (values.length && values.every((v) => typeof v === "number")) {
      const declared = (space[name] || {}).log === true || "loguniform" in (space[name] || {});
      const log = declared && values.every((v) => v > 0);
      return { dim, name, type: log ? "log" : "value", scale: true };
    }
    return { dim, name, type: "category", data: [...new Set(values.map(String))].sort() };
  });
  const objective = names.length;
  axes.push({ dim: objective, name: detail.metric, type: "value", scale: true, nameTextStyle: { fontWeight: "bold" } });
  const values = rows.map((r) => r.point.value);
  const lo = values.length ? Math.min(...values) : 0;
  const hi = values.length ? Math.max(...values) : 1;
  const items = rows.map((r) => ({
    name: `trial ${r.c.trial_id}`,
    value: [
      ...names.map((n) => {
        const v = r.c.params[n];
        return typeof v === "number" ? v : v === undefined || v === null ? null : String(v);
      }),
      r.point.value,
    ],
  }));
  draw(
    "chart-parallel",
    {
      parallel: { left: 60, right: 90, top: 40, bottom: 30 },
      parallelAxis: axes,
      visualMap: {
        type: "continuous",
        dimension: objective,
        min: lo,
        max: hi === lo ? lo + 1 : hi,
        inRange: { color: detail.mode === "min" ? ["#1565c0", "#d0d7e5"] : ["#d0d7e5", "#1565c0"] },
        right: 0,
        top: "middle",
        calculable: true,
        precision: 3,
        text: [detail.mode === "min" ? "worse" : "better", ""],
      },
      tooltip: { trigger: "item", formatter: (p) => `${p.name}: ${fmt(p.value[objective])}` },
      series: [{ type: "parallel", id: "parallel", data: items, lineStyle: { width: 1.4, opacity: 0.8 } }],
    },
    rows.map((r) => r.c.trial_id),
  );
}

async function drawImportance(id, at) {
  let answer;
  try {
    answer = await getJSON(`/api/studies/${encodeURIComponent(id)}/importance${at !== null ? `?fidelity=${at}` : ""}`);
  } catch (error) {
    answer = { fidelity: at, method: "-", items: [], note: error.message };
  }
  $("#importance-fidelity").textContent = fmt(answer.fidelity);
  $("#importance-method").textContent = answer.method;
  const note = $("#importance-note");
  note.hidden = !answer.note;
  note.textContent = answer.note || "";
  const items = [...answer.items].reverse(); // the most important on top
  draw("chart-importance", {
    grid: { left: 110, right: 40, top: 16, bottom: 36 },
    tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
    xAxis: valueAxis("importance", { scale: false, min: 0, max: 1, nameGap: 24 }),
    yAxis: { type: "category", data: items.map((i) => i.param), splitLine: { show: true } },
    series: [{ type: "bar", id: "importance", data: items.map((i) => i.importance), itemStyle: { color: "#1565c0" }, barMaxWidth: 26,
      label: { show: true, position: "right", formatter: (p) => fmt(p.value, 2) } }],
    graphic: items.length ? [] : [{ type: "text", left: "center", top: "middle", style: { text: answer.note || "-" } }],
  });
}

function showFailures(failures, trials) {
  const box = $("#failures");
  box.replaceChildren();
  const failed = trials.filter((t) => t.status === "failed");
  const head = document.createElement("p");
  head.className = "failures-count";
  head.textContent = failures.count ? `${failures.count} trial(s) failed` : "no trial failed";
  box.append(head);
  if (!failures.count) return;
  const list = document.createElement("ul");
  for (const error of failures.errors) {
    const item = document.createElement("li");
    item.className = "failure";
    item.textContent = `${error.trials} x ${error.message}`;
    list.append(item);
  }
  box.append(list);
  const links = document.createElement("p");
  links.textContent = "failed trials: ";
  for (const t of failed) {
    const link = document.createElement("a");
    link.href = `#${encodeURIComponent(state.study)}/trial=${t.trial_id}`;
    link.dataset.trial = t.trial_id;
    link.textContent = String(t.trial_id);
    link.addEventListener("click", (event) => {
      event.preventDefault();
      openTrial(t.trial_id);
    });
    links.append(link);
  }
  box.append(links);
}

function fillTrials(trials) {
  const body = $("#trials tbody");
  body.replaceChildren();
  for (const t of trials) {
    const row = body.insertRow();
    row.dataset.trial = t.trial_id;
    if (t.trial_id === state.trial) row.classList.add("selected");
    const params = Object.entries(t.params).map(([k, v]) => `${k}=${fmt(v, 3)}`).join(", ");
    [t.trial_id, t.status, t.bracket, t.resource, fmt(t.value), params].forEach((content, i) => {
      const cell = row.insertCell();
      cell.textContent = content;
      if (i === 1) cell.className = `status-${t.status}`;
    });
    row.addEventListener("click", () => openTrial(t.trial_id));
  }
}

// -- trial detail ---------------------------------------------------------------------------------------

async function showTrial(id, trialId) {
  const panel = $("#detail");
  if (trialId === null) {
    panel.hidden = true;
    delete panel.dataset.trial;
    return;
  }
  let curve;
  try {
    curve = await getJSON(`/api/studies/${encodeURIComponent(id)}/trials/${trialId}/curve`);
  } catch (error) {
    panel.hidden = false;
    $("#detail-title").textContent = `Trial ${trialId}`;
    $("#detail-line").textContent = error.message;
    return;
  }
  const trial = (state.data ? state.data.trials : []).find((t) => t.trial_id === trialId) || {};
  const points = curve.points;
  const last = (key) => [...points].reverse().map((p) => p[key]).find((v) => v) || "-";
  panel.hidden = false;
  panel.dataset.trial = trialId;
  $("#detail-title").textContent = `Trial ${trialId}`;
  $("#detail-line").textContent =
    `${trial.status || points[points.length - 1].status}; bracket ${curve.bracket}; ` +
    `${fmt(trial.resource)} epochs; value ${fmt(trial.value)}; node ${last("node")}; checkpoint ${last("checkpoint")}`;
  const error = last("error");
  $("#detail-error").hidden = error === "-";
  $("#detail-error").textContent = error === "-" ? "" : `error: ${error}`;
  const config = $("#detail-config tbody");
  config.replaceChildren();
  for (const [key, value] of Object.entries(curve.params)) {
    const row = config.insertRow();
    row.insertCell().textContent = key;
    row.insertCell().textContent = fmt(value, 6);
  }
  const table = $("#detail-points tbody");
  table.replaceChildren();
  for (const p of points) {
    const row = table.insertRow();
    row.dataset.resource = p.resource;
    const rung = p.rung >= 0 ? String(p.rung) : "";
    [p.resource, fmt(p.value), p.decision, rung, p.status, p.node, p.checkpoint, p.error].forEach((content) => {
      row.insertCell().textContent = content;
    });
  }
  const values = points.filter((p) => p.value !== null);
  const decisions = points.filter((p) => p.rung >= 0 && p.value !== null);
  const spec = state.data ? state.data.detail.spec || {} : {};
  const top = Math.max((spec.fidelity || {}).max || 0, ...points.map((p) => p.resource)); // the whole budget
  draw("chart-detail", {
    grid: grid(),
    tooltip: { trigger: "axis" },
    xAxis: valueAxis("epochs", { scale: false, min: 0, max: top || null, nameGap: 28 }),
    yAxis: valueAxis(state.data ? state.data.detail.metric : "value"),
    series: [
      { type: "line", id: "detail-curve", data: values.map((p) => [p.resource, p.value]), symbolSize: 5 },
      {
        type: "scatter",
        id: "detail-decisions",
        data: decisions.map((p) => ({ value: [p.resource, p.value], name: p.decision })),
        symbolSize: 11,
        itemStyle: { color: "#ef6c00" },
        label: { show: true, position: "top", formatter: (p) => p.name },
      },
    ],
    graphic: values.length ? [] : [{ type: "text", left: "center", top: "middle", style: { text: "no value reported" } }],
  }, [trialId]);
  document.querySelectorAll("#trials tbody tr").forEach((r) => r.classList.toggle("selected", Number(r.dataset.trial) === trialId));
}

function openTrial(trialId) {
  state.trial = trialId;
  writeHash();
  showTrial(state.study, trialId).then(() => $("#detail").scrollIntoView({ block: "nearest" }));
}

// -- filters --------------------------------------------------------------------------------------------

function filtered(data) {
  const status = $("#filter-status").value;
  const bracket = $("#filter-bracket").value;
  const reached = Number($("#filter-fidelity").value) || 0;
  const keep = new Set(
    data.trials
      .filter((t) => (!status || t.status === status) && (bracket === "" || String(t.bracket) === bracket) && t.resource >= reached)
      .map((t) => t.trial_id),
  );
  return {
    trials: data.trials.filter((t) => keep.has(t.trial_id)),
    curves: data.curves.filter((c) => keep.has(c.trial_id)),
  };
}

function fillBrackets(brackets) {
  const select = $("#filter-bracket");
  const chosen = select.value;
  select.replaceChildren(new Option("any", ""), ...brackets.map((b) => new Option(String(b), String(b))));
  select.value = brackets.map(String).includes(chosen) ? chosen : "";
}

function fillFidelities(curves) {
  const select = $("#parallel-fidelity");
  const counts = fidelities(curves);
  if (state.fidelityStudy !== state.study || !counts.some(([r]) => r === state.fidelity)) {
    state.fidelity = defaultFidelity(curves);
    state.fidelityStudy = state.study;
  }
  select.replaceChildren(...counts.map(([r, n]) => new Option(`${r} (${n} trials)`, String(r))));
  if (state.fidelity !== null) select.value = String(state.fidelity);
}

function render() {
  const data = state.data;
  if (!data) return;
  const { trials, curves } = filtered(data);
  $("#filter-count").textContent = `${trials.length} of ${data.trials.length} trials shown`;
  drawCurves(data, curves);
  drawBest(data.detail);
  drawParallel(data, curves, state.fidelity);
  fillTrials(trials);
}

// -- loading --------------------------------------------------------------------------------------------

async function loadStudies() {
  const studies = await getJSON("/api/studies");
  const body = $("#studies tbody");
  body.replaceChildren();
  if (!state.study || !studies.some((s) => s.id === state.study)) {
    const wanted = parseHash();
    const known = studies.some((s) => s.id === wanted.study);
    state.study = known ? wanted.study : studies.length ? studies[0].id : null;
    state.trial = known ? wanted.trial : null;
  }
  for (const s of studies) {
    const row = body.insertRow();
    row.dataset.study = s.id;
    if (s.id === state.study) row.classList.add("selected");
    const trials = Object.entries(s.trials).filter(([, n]) => n).map(([k, n]) => `${n} ${k}`).join(", ");
    const cells = [s.id, s.status, trials || "-", s.best ? fmt(s.best.value) : "-", fmt(s.budget_used.epochs), when(s.updated)];
    cells.forEach((c, i) => {
      const cell = row.insertCell();
      cell.textContent = c;
      if (i === 1) cell.className = `status-${s.status}`;
    });
    row.addEventListener("click", () => selectStudy(s.id));
  }
  return studies;
}

async function loadStudy(id) {
  const base = `/api/studies/${encodeURIComponent(id)}`;
  const [detail, page, curves, rungs] = await Promise.all([
    getJSON(base),
    getJSON(`${base}/trials?limit=1000&sort=trial_id`),
    getJSON(`${base}/curves?limit=5000`),
    getJSON(`${base}/rungs`),
  ]);
  if (id !== state.study) return null; // another study was selected meanwhile
  const brackets = [...new Set(curves.map((c) => c.bracket))].sort((a, b) => a - b);
  state.data = { detail, trials: page.items, curves, rungs, brackets };
  $("#study").hidden = false;
  $("#study-title").textContent = `Study ${id}`;
  const used = detail.budget_used || {};
  $("#study-line").textContent =
    `${detail.status}${detail.reason ? ` (${detail.reason})` : ""}; ${page.total} trials; ` +
    `${fmt(used.epochs)} epochs used; best ${detail.metric} ${detail.best ? fmt(detail.best.value) : "-"}` +
    ` (trial ${detail.best ? detail.best.trial_id : "-"}); scheduler ${schedulerName(detail.spec)}`;
  $("#stop-button").disabled = detail.status !== "running";
  $("#stop-button").title = detail.status === "running" ? "ask the study's driver to stop" : `the study is ${detail.status}`;
  $("#bracket-legend").replaceChildren(
    ...brackets.map((b) => {
      const item = document.createElement("span");
      item.className = "legend-item";
      const swatch = document.createElement("i");
      swatch.style.background = bracketColour(brackets, b);
      item.append(swatch, `bracket ${b}`);
      return item;
    }),
  );
  fillBrackets(brackets);
  fillFidelities(curves);
  showFailures(detail.failures || { count: 0, errors: [] }, page.items);
  render();
  await Promise.all([drawImportance(id, state.fidelity), showTrial(id, state.trial)]);
  document.body.dataset.loaded = id;
  return detail;
}

async function selectStudy(id) {
  state.study = id;
  state.trial = null;
  state.data = null;
  writeHash();
  document.querySelectorAll("#studies tbody tr").forEach((r) => r.classList.toggle("selected", r.dataset.study === id));
  await refresh();
}

async function refresh() {
  if (timer) clearTimeout(timer);
  let running = false;
  try {
    const health = await getJSON("/api/health");
    $("#health").textContent = `${health.studies} studies in ${health.store}`;
    const studies = await loadStudies();
    if (state.study) {
      writeHash();
      const detail = await loadStudy(state.study);
      running = detail !== null && detail.status === "running";
    } else {
      running = studies.some((s) => s.status === "running");
    }
  } catch (error) {
    $("#health").textContent = `cannot reach the service: ${error.message}`;
  }
  timer = setTimeout(refresh, running ? 3000 : 15000);
}

// -- stop -----------------------------------------------------------------------------------------------

async function stopStudy(event) {
  event.preventDefault();
  const result = $("#stop-result");
  const token = $("#stop-token").value.trim();
  if (!token) {
    result.className = "stop-bad";
    result.textContent = "enter the service's token first";
    $("#stop-token").focus();
    return;
  }
  if (!window.confirm(`Stop study ${state.study}? Running trials finish their epoch and the driver exits.`)) return;
  result.className = "muted";
  result.textContent = "asking...";
  try {
    const response = await fetch(`/api/studies/${encodeURIComponent(state.study)}/stop`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}` },
    });
    const body = await response.json().catch(() => ({}));
    result.className = response.ok ? "stop-ok" : "stop-bad";
    result.textContent = body.message || `${response.status}`;
  } catch (error) {
    result.className = "stop-bad";
    result.textContent = `cannot reach the service: ${error.message}`;
  }
  result.dataset.done = "true";
}

// -- wiring ---------------------------------------------------------------------------------------------

$("#stop-form").addEventListener("submit", stopStudy);
$("#filters").addEventListener("submit", (event) => event.preventDefault());
for (const selector of ["#filter-status", "#filter-bracket", "#filter-fidelity"]) {
  $(selector).addEventListener("input", render);
}
$("#parallel-fidelity").addEventListener("change", () => {
  state.fidelity = Number($("#parallel-fidelity").value);
  render();
  drawImportance(state.study, state.fidelity);
});
$("#detail-close").addEventListener("click", () => {
  state.trial = null;
  writeHash();
  showTrial(state.study, null);
});
window.addEventListener("hashchange", () => {
  const wanted = parseHash();
  if (wanted.study && wanted.study !== state.study) {
    selectStudy(wanted.study).then(() => wanted.trial !== null && openTrial(wanted.trial));
  } else if (wanted.trial !== state.trial) {
    state.trial = wanted.trial;
    showTrial(state.study, wanted.trial);
  }
});
window.addEventListener("resize", () => {
  document.querySelectorAll(".chart").forEach((node) => echarts.getInstanceByDom(node)?.resize());
});

refresh();
