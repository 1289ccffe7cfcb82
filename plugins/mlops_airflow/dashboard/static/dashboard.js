// The toolkit dashboard's pages: fetch the JSON API (relative URLs) and render it. No framework, no build.
// Airflow links open with target="_top" (the dashboard sits in Airflow's iframe); MLflow, Evidently and
// reports open in a new tab. When a page has rendered, <body data-state="ready"> (or "error").
"use strict";

const BODY = document.body;
const ROOT = BODY.dataset.root || "";  // relative way back to /toolkit/
const PAGE = BODY.dataset.page;
const RUNS_SHOWN = 20;  // newest training runs listed on the project page; the chart shows them all

// ---- small helpers -------------------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === "") continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// kind: "airflow" (top frame), "mlflow" / "evidently" / "report" (new tab), "page" (this frame)
function link(text, href, kind, extraClass) {
  if (!href) return null;
  const local = kind === "page" || kind === "report";
  const attrs = {href: local && !/^([a-z]+:|\/)/.test(href) ? ROOT + href : href,
                 class: [kind + "-link", extraClass].filter(Boolean).join(" ")};
  if (kind === "airflow") attrs.target = "_top";
  else if (kind !== "page") { attrs.target = "_blank"; attrs.rel = "noopener"; }
  return el("a", attrs, text);
}

function num(value, digits) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (typeof value !== "number") return String(value);
  const d = digits === undefined ? (Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 1 ? 2 : 3) : digits;
  return value.toFixed(d);
}

function ago(iso) {
  if (!iso) return null;
  const then = new Date(iso), seconds = (Date.now() - then.getTime()) / 1000;
  let text;
  if (seconds < 90) text = Math.max(0, Math.round(seconds)) + " s ago";
  else if (seconds < 5400) text = Math.round(seconds / 60) + " min ago";
  else if (seconds < 172800) text = Math.round(seconds / 3600) + " h ago";
  else text = Math.round(seconds / 86400) + " d ago";
  return el("time", {datetime: iso, title: then.toLocaleString()}, text);
}

function badge(text, kind) {
  return el("span", {class: "badge " + (kind || String(text).replace(/\s+/g, "-"))}, text);
}

function quantized(kind) {
  return kind && kind !== "none" ? " " + kind : "";
}

function metrics(values) {
  return el("span", {class: "metrics"}, Object.entries(values || {}).map(
    ([name, value]) => el("span", {class: "metric", "data-metric": name}, name + " ", el("b", {}, num(value)))));
}

function table(node, headers, rows) {
  node.replaceChildren(el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
                       el("tbody", {}, rows.length ? rows : el("tr", {class: "empty"},
                          el("td", {colspan: headers.length}, "none yet"))));
}

function notes(list) {
  document.getElementById("notes").replaceChildren(...(list || []).map((n) => el("li", {}, n)));
}

// ---- header: the machine and the services ------------------------------------------------------
function renderMachine(machine) {
  const node = document.getElementById("machine");
  if (!machine) { node.replaceChildren(); return; }
  const pools = (machine.pools || []).map((p) => el("li", {"data-pool": p.name},
    el("b", {}, p.name), " ", p.slots < 0 ? "unlimited" : `${p.running}/${p.slots} running`,
    p.queued ? `, ${p.queued} queued` : "", p.open === null || p.open === undefined ? "" : `, ${p.open} open`));
  node.replaceChildren(
    el("span", {id: "machine-chip", class: "fact"}, machine.chip || "unknown chip"),
    el("span", {id: "machine-memory", class: "fact"}, machine.memory_gb ? num(machine.memory_gb, 0) + " GB" : "memory ?"),
    el("span", {id: "machine-device", class: "fact"}, machine.device || "device ?"),
    el("span", {id: "machine-thermal", class: "fact", title: machine.thermal_source || ""},
       "thermal ", badge(machine.thermal || "unknown", "thermal-" + (machine.thermal || "unknown"))),
    el("ul", {id: "pools", class: "pools"}, pools));
}

function renderLinks(links) {
  links = links || {};
  document.getElementById("links").replaceChildren(...[
    link("Airflow", links.airflow || "/", "airflow", "service"),
    link("MLflow", links.mlflow, "mlflow", "service"),
    link("Evidently", links.evidently, "evidently", "service"),
    link("Toolkit report", links.toolkit_report, "report", "service toolkit-report-link"),
  ].filter(Boolean));
}

// ---- one project row (overview, and the project page's summary) --------------------------------
function versionCell(version) {
  if (!version) return el("td", {class: "version"}, "–");
  return el("td", {class: "version"},
    link("v" + version.version, version.url, "mlflow", "version-link"), " ",
    version.technique ? el("span", {class: "technique"}, version.technique) : null,
    el("div", {}, metrics(version.metrics)),
    version.footprint_mb !== null && version.footprint_mb !== undefined
      ? el("div", {class: "footprint"}, num(version.footprint_mb, 1) + " MB" + quantized(version.quantization)) : null,
    el("div", {class: "muted"}, ago(version.created)));
}

function projectRow(p) {
  const links = p.links || {}, life = p.lifecycle, serving = p.serving || {}, mon = p.monitoring;
  const versions = p.versions || {}, queue = p.queue || {waiting: 0, tasks: []};
  const name = el("td", {class: "name"},
    link(p.name, links.page || "projects/" + p.name, "page", "project-link"),
    p.valid === false ? [" ", link(badge(`invalid YAML (${(p.errors || []).length})`, "invalid"),
                                    (links.page || "projects/" + p.name) + "#yaml", "page", "yaml-link")] : null,
    el("div", {class: "muted"}, [p.family, p.owner].filter(Boolean).join(" · ")));
  const lifecycle = el("td", {class: "lifecycle"},
    life ? [link(badge(life.state, "state-" + life.state), life.url, "airflow", "run-link"), " ",
            el("span", {class: "muted"}, life.run_type), " ", ago(life.start || life.end)]
         : el("span", {class: "muted"}, "never run"),
    p.paused ? [" ", badge("paused")] : null);
  const technique = p.best_technique
    ? el("td", {title: Object.entries(p.best_technique.all || {}).map(([m, t]) => m + ": " + t).join("\n")},
         el("b", {}, p.best_technique.technique), el("div", {class: "muted"}, "on " + p.best_technique.machine))
    : el("td", {class: "muted"}, "–");
  const servingCell = el("td", {class: "serving"},
    link(badge(serving.status || "unknown", "serving-" + String(serving.status || "unknown").replace(/\s+/g, "-")),
         serving.url, "mlflow", "serving-link") || badge(serving.status || "unknown"),
    serving.version ? [" v" + serving.version] : null,
    serving.backend || serving.device ? el("div", {}, [serving.backend, serving.device].filter(Boolean).join(" / ")
      + (serving.replicas !== null && serving.replicas !== undefined ? ` × ${serving.replicas}` : "")) : null,
    serving.p50_ms !== null && serving.p50_ms !== undefined || serving.p99_ms !== null && serving.p99_ms !== undefined
      ? el("div", {class: "latency"}, `p50 ${num(serving.p50_ms, 1)} ms · p99 ${num(serving.p99_ms, 1)} ms`) : null,
    serving.request_rate !== null && serving.request_rate !== undefined || serving.errors || serving.rejected
      ? el("div", {class: "rate", title: "errors: 5xx answers, rejected: 4xx, since the gateway started"},
           `${num(serving.request_rate, 2)} req/s · ${serving.errors || 0} errors · ${serving.rejected || 0} rejected`)
      : null);
  const monitoring = mon
    ? el("td", {class: "monitoring"},
         mon.drift_detected === null || mon.drift_detected === undefined ? null
           : badge(mon.drift_detected ? "drift" : "no drift", mon.drift_detected ? "drift" : "ok"),
         el("div", {}, "drift share ", num(mon.drift_share, 2)), el("div", {}, "accuracy ", num(mon.accuracy)),
         el("div", {class: "muted"}, link("last run", mon.url, "evidently", "monitor-link") || "last run", " ", ago(mon.last_run)))
    : el("td", {class: "muted"}, "not monitored");
  const queueCell = el("td", {class: "queue", title: queue.tasks.map((t) => `${t.dag_id}.${t.task_id}: ${t.reason || ""}`).join("\n")},
    queue.waiting ? badge(queue.waiting + " waiting", "waiting") : el("span", {class: "muted"}, "nothing"),
    queue.tasks.slice(0, 3).map((t) => el("div", {class: "muted task"}, `${t.task_id}: ${t.reason || ""}`)));
  const linkCell = el("td", {class: "links"},
    link("Airflow", links.airflow, "airflow", "dag-link"),
    link("MLflow", links.mlflow_experiment, "mlflow", "mlflow-experiment-link"),
    link("Model", links.mlflow_model, "mlflow", "mlflow-model-link"),
    link("Evidently", links.evidently, "evidently"),
    link("Report", links.report, "report"));
  const metricName = versions.metric ? `${versions.metric} (${versions.goal === "min" ? "lower" : "higher"} is better)` : null;
  return el("tr", {"data-project": p.name, "data-valid": String(p.valid !== false)},
    name, lifecycle, versionCell(versions.latest),
    (() => { const cell = versionCell(versions.best); if (metricName) cell.title = metricName;
             cell.append(el("div", {class: "muted"}, versions.count + " versions")); return cell; })(),
    technique, servingCell, monitoring, queueCell, linkCell);
}

// ---- charts: a small inline SVG, no library ----------------------------------------------------
function chart(points, label) {
  points = points.filter((p) => p.x && p.y !== null && p.y !== undefined && Number.isFinite(p.y));
  if (points.length === 0) return el("p", {class: "muted"}, "no " + label + " to plot yet");
  const W = 640, H = 160, PAD = 36, ns = "http://www.w3.org/2000/svg";
  const xs = points.map((p) => new Date(p.x).getTime()), ys = points.map((p) => p.y);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)], [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const sx = (x) => PAD + (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0)) * (W - 2 * PAD);
  const sy = (y) => H - PAD / 2 - (y1 === y0 ? 0.5 : (y - y0) / (y1 - y0)) * (H - PAD);
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  const add = (tag, attrs, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
    return node;
  };
  add("text", {x: 2, y: sy(y1) + 4, class: "axis"}, num(y1));
  add("text", {x: 2, y: sy(y0) + 4, class: "axis"}, num(y0));
  const day = (t) => new Date(t).toLocaleDateString();
  add("text", {x: PAD, y: H - 2, class: "axis"}, day(x0));
  if (x1 !== x0) add("text", {x: W - PAD, y: H - 2, class: "axis", "text-anchor": "end"}, day(x1));
  add("polyline", {points: points.map((p, i) => `${sx(xs[i])},${sy(p.y)}`).join(" "), class: "line"});
  points.forEach((p, i) => {
    const dot = add("circle", {cx: sx(xs[i]), cy: sy(p.y), r: 3.5, class: "dot " + (p.cls || "")});
    const title = document.createElementNS(ns, "title");
    title.textContent = `${p.x}: ${num(p.y)}${p.note ? " · " + p.note : ""}`;
    dot.append(title);
  });
  return svg;
}

// ---- pages -------------------------------------------------------------------------------------
async function getJSON(path) {
  const response = await fetch(ROOT + path, {credentials: "same-origin", headers: {Accept: "application/json"}});
  let body = null;
  try { body = await response.json(); } catch (e) { body = {detail: response.statusText}; }
  if (!response.ok) {
    const error = new Error(body && body.detail ? body.detail : response.statusText);
    error.status = response.status;
    error.body = body;
    throw error;
  }
  return body;
}

function fail(error) {
  const status = document.getElementById("status");
  status.className = "status error";
  const parts = [error.message];
  if (error.status === 401 || error.status === 403) {
    parts.push(" ", el("a", {href: "/api/v2/auth/login?next=" + encodeURIComponent(location.pathname), target: "_top"}, "Log in to Airflow"));
  }
  const suggestions = (error.body && error.body.suggestions) || [];
  if (suggestions.length) parts.push(el("span", {id: "suggestions"}, " Try: ",
    suggestions.map((s) => link(s, "projects/" + s, "page", "suggestion-link"))));
  status.replaceChildren(el("span", {id: "error"}, ...parts));
  BODY.dataset.state = "error";
}

function finish(data) {
  document.getElementById("generated").textContent =
    `generated ${new Date(data.generated || Date.now()).toLocaleTimeString()} in ${num(data.seconds, 2)} s`;
  document.getElementById("status").hidden = true;
  BODY.dataset.state = "ready";
}

async function overviewPage() {
  const data = await getJSON("api/overview");
  renderMachine(data.machine);
  renderLinks(data.links);
  const rows = (data.projects || []).map(projectRow);
  const grid = document.getElementById("projects");
  grid.tBodies[0].replaceChildren(...rows);
  grid.hidden = false;
  notes([...(data.notes || []), ...(data.projects || []).flatMap((p) => (p.notes || []).map((n) => p.name + ": " + n))]);
  finish(data);
}

function dagRunRows(runs) {
  return (runs || []).map((r) => el("tr", {"data-run-id": r.run_id},
    el("td", {}, link(r.run_id, r.url, "airflow", "run-link")), el("td", {}, badge(r.state, "state-" + r.state)),
    el("td", {}, r.run_type), el("td", {}, ago(r.start)), el("td", {}, ago(r.end))));
}

function renderYaml(yaml, name) {
  yaml = yaml || {path: "", text: "", valid: true, errors: []};
  document.getElementById("yaml-path").textContent = yaml.path || "";
  const status = document.getElementById("yaml-status");
  status.textContent = yaml.valid ? "valid" : "invalid";
  status.className = "badge " + (yaml.valid ? "ok" : "invalid");
  document.getElementById("yaml-errors").replaceChildren(...(yaml.errors || []).map((e) =>
    el("li", {class: "yaml-error", "data-line": e.line, "data-column": e.column, "data-field": e.field},
      el("a", {href: "#L" + e.line, class: "location"}, `${e.file || name}:${e.line || "?"}:${e.column || "?"}`), " ",
      e.field ? el("code", {}, e.field) : null, " ", e.message || "",
      e.suggestion ? el("span", {class: "suggestion"}, " (" + e.suggestion + ")") : null)));
  const bad = new Set((yaml.errors || []).map((e) => e.line));
  document.getElementById("yaml-text").replaceChildren(...String(yaml.text || "").replace(/\n$/, "").split("\n").map((line, i) =>
    el("span", {id: "L" + (i + 1), class: "line" + (bad.has(i + 1) ? " error-line" : "")},
       el("span", {class: "lineno"}, String(i + 1)), line + "\n")));
}

async function projectPage() {
  const name = BODY.dataset.projectPage;
  let data;
  try {
    data = await getJSON("api/projects/" + encodeURIComponent(name));
  } finally {
    getJSON("api/overview").then((o) => { renderMachine(o.machine); renderLinks(o.links); }).catch(() => {});
  }
  document.title = `${data.name} · Toolkit dashboard`;
  document.getElementById("project-meta").replaceChildren(
    [data.family, data.owner && "owner " + data.owner].filter(Boolean).join(" · "), " ",
    ...Object.entries(data.tags || {}).map(([k, v]) => el("span", {class: "tag"}, `${k}=${v}`)));
  document.getElementById("project-description").textContent = data.description || "";
  document.getElementById("projects").tBodies[0].replaceChildren(projectRow(data));

  const runs = data.runs || [], metric = (data.versions && data.versions.metric) || "quality";
  document.getElementById("runs-chart").replaceChildren(chart(runs.map((r) => ({
    x: r.start, y: r.quality, cls: "status-" + r.status, note: [r.technique, r.status].filter(Boolean).join(", ")})),
    metric + " per training run"));
  const runRow = (r) => el("tr", {"data-run-id": r.run_id}, el("td", {}, ago(r.start)),
    el("td", {}, badge(r.status, "state-" + String(r.status).toLowerCase())), el("td", {}, r.technique || "–"),
    el("td", {}, num(r.quality)), el("td", {}, num(r.seconds, 1)), el("td", {}, link(r.run_id.slice(0, 8), r.url, "mlflow", "run-link")));
  const runsHead = ["Started", "Status", "Technique", metric, "Seconds", "Run"];
  const newest = runs.slice().reverse();
  table(document.getElementById("runs-table"), runsHead, newest.slice(0, RUNS_SHOWN).map(runRow));
  if (newest.length > RUNS_SHOWN) {
    const more = el("button", {type: "button", id: "all-runs"}, `Show all ${newest.length} runs`);
    more.addEventListener("click", () => { table(document.getElementById("runs-table"), runsHead, newest.map(runRow)); more.remove(); });
    document.getElementById("runs-table").after(more);
  }

  table(document.getElementById("versions-table"), ["Version", "Created", "Technique", "Metrics", "Footprint", "Run"],
    (data.all_versions || []).slice().reverse().map((v) => el("tr", {"data-version": v.version},
      el("td", {}, link("v" + v.version, v.url, "mlflow", "version-link")), el("td", {}, ago(v.created)),
      el("td", {}, v.technique || "–"), el("td", {}, metrics(v.metrics)),
      el("td", {}, v.footprint_mb === null || v.footprint_mb === undefined ? "–" : num(v.footprint_mb, 1) + " MB" + quantized(v.quantization)),
      el("td", {}, v.run_id ? v.run_id.slice(0, 8) : "–"))));

  table(document.getElementById("deployments-table"), ["Version", "Backend", "Device", "Replicas", "Deployed"],
    (data.deployments || []).map((d) => el("tr", {"data-version": d.version},
      el("td", {}, link("v" + d.version, d.url, "airflow") || "v" + d.version), el("td", {}, d.backend || "–"),
      el("td", {}, d.device || "–"), el("td", {}, num(d.replicas, 0)), el("td", {}, ago(d.deployed_at)))));

  const history = data.monitoring_history || [];
  document.getElementById("monitoring-chart").replaceChildren(chart(history.map((m) => ({
    x: m.start, y: m.drift_share, cls: m.drift_detected ? "drift" : "ok", note: "version " + (m.version || "?")})),
    "drift share"));
  table(document.getElementById("monitoring-table"), ["Run", "Version", "Drift share", "Drift", "Accuracy", "p50 / p99 ms", "Requests", "Report"],
    history.slice().reverse().map((m) => el("tr", {}, el("td", {}, ago(m.start)), el("td", {}, m.version || "–"),
      el("td", {}, num(m.drift_share, 2)),
      el("td", {}, m.drift_detected === null || m.drift_detected === undefined ? "–" : badge(m.drift_detected ? "drift" : "no drift", m.drift_detected ? "drift" : "ok")),
      el("td", {}, num(m.accuracy)), el("td", {}, `${num(m.p50_ms, 1)} / ${num(m.p99_ms, 1)}`),
      el("td", {}, num(m.requests, 0)), el("td", {}, link("Evidently", m.url, "evidently")))));

  const head = ["Run", "State", "Type", "Started", "Ended"];
  table(document.getElementById("lifecycle-runs"), head, dagRunRows(data.lifecycle_runs));
  table(document.getElementById("deploy-runs"), head, dagRunRows(data.deploy_runs));
  table(document.getElementById("monitor-runs"), head, dagRunRows(data.monitor_runs));

  const report = data.report || {};
  document.getElementById("report-status").replaceChildren(...(report.exists && report.url
    ? [link("Open the report", report.url, "report"), " ", el("span", {class: "muted"}, "generated "), ago(report.generated)]
    : [el("span", {class: "muted"}, "not generated yet: run "), el("code", {}, `mlops report --project ${data.name}`)]
  ).filter(Boolean));

  renderYaml(data.yaml, data.name);
  notes(data.notes);
  document.getElementById("project").hidden = false;
  finish(data);
  if (location.hash) { const target = document.getElementById(location.hash.slice(1)); if (target) target.scrollIntoView(); }
}

// Airflow's UI shows this page in an iframe sandboxed without allow-top-navigation and allow-popups, so a
// plain target="_top" / "_blank" link does nothing there. The frame is same-origin with Airflow (the
// sandbox allows that), so such a click is replayed by an anchor in Airflow's own document, which may
// navigate itself and open tabs. Outside the iframe the links work as written.
function escapeSandbox(event) {
  const anchor = event.target.closest && event.target.closest("a[target]");
  if (!anchor || window.top === window || event.defaultPrevented || event.button !== 0) return;
  let topDocument;
  try { topDocument = window.top.document; } catch (e) { return; }  // not same-origin: leave it alone
  event.preventDefault();
  const proxy = topDocument.createElement("a");
  proxy.href = anchor.href;  // absolute, resolved against this frame's URL
  proxy.target = anchor.target === "_top" ? "_self" : anchor.target;
  if (anchor.rel) proxy.rel = anchor.rel;
  proxy.style.display = "none";
  topDocument.body.append(proxy);
  proxy.click();
  proxy.remove();
}
document.addEventListener("click", escapeSandbox);

(PAGE === "project" ? projectPage() : overviewPage()).catch(fail);
