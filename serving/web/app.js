// preread reading worklist: plain JavaScript, no external libraries (everything ships with the service).
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { token: sessionStorage.getItem("preread.token"), me: null, timer: null, clock: null,
                study: null, items: [], sites: new Set() };

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  const sentWith = state.token;
  if (sentWith) headers["Authorization"] = "Bearer " + sentWith;
  if (options.json !== undefined) { headers["Content-Type"] = "application/json"; options.body = JSON.stringify(options.json); }
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401 && path !== "/api/v1/login") {
    // Only the current session ends here: a request still in flight from before a logout (or from the
    // previous user) must not sign out whoever is signed in now.
    if (sentWith === state.token) logoutLocal("Your session ended; sign in again.");
    throw new Error(UNAUTHORISED);
  }
  return response;
}
const UNAUTHORISED = "unauthorised";
// A 401 stops whatever the caller was doing; the login view already says why, so the rejection is
// expected and not an error of the page.
window.addEventListener("unhandledrejection", (event) => {
  if (event.reason && event.reason.message === UNAUTHORISED) event.preventDefault();
});

function text(value) { return value === null || value === undefined ? "" : String(value); }
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k.startsWith("data-")) node.setAttribute(k, v); else node[k] = v;
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(text(child)));
  return node;
}
function showMany(ids) { for (const s of ["login-view", "worklist-view", "study-view", "submissions-view", "monitoring-view", "export-view", "audit-view"]) $("#" + s).hidden = !ids.includes(s); }

function waiting(arrived) {
  const minutes = Math.max(0, (Date.now() - new Date(arrived).getTime()) / 60000);
  const h = Math.floor(minutes / 60), m = Math.floor(minutes % 60), s = Math.floor((minutes * 60) % 60);
  return (h ? h + " h " : "") + String(m).padStart(h ? 2 : 1, "0") + " min " + String(s).padStart(2, "0") + " s";
}

// --- login ---------------------------------------------------------------------------------------
$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("#login-error").textContent = "";
  const response = await api("/api/v1/login", { method: "POST", json: { username: $("#username").value, password: $("#password").value } });
  if (!response.ok) { $("#login-error").textContent = "Unknown user or wrong password."; return; }
  const body = await response.json();
  state.token = body.token;
  sessionStorage.setItem("preread.token", body.token);
  $("#password").value = "";
  await start();
});

$("#logout-btn").addEventListener("click", async () => {
  try { await api("/api/v1/logout", { method: "POST" }); } catch (e) { /* already logged out */ }
  logoutLocal("");
});

function logoutLocal(message) {
  state.token = null; state.me = null;
  sessionStorage.removeItem("preread.token");
  clearInterval(state.timer); clearInterval(state.clock);
  $("#who").hidden = true;
  showMany(["login-view"]);
  $("#login-error").textContent = message || "";
}

const ADMIN_VIEWS = ["worklist-view", "audit-view", "monitoring-view", "export-view"];

async function start() {
  const response = await api("/api/v1/me");
  state.me = await response.json();
  $("#who").hidden = false;
  $("#who-name").textContent = `${state.me.user} (${state.me.role}; sites ${state.me.sites.join(", ")})`;
  const role = state.me.role;
  if (role === "admin") { showMany(ADMIN_VIEWS); await refreshWorklist(); await refreshAudit(); await refreshMonitoring(); poll(refreshWorklist); }
  else if (role === "reader") { showMany(["worklist-view"]); await refreshWorklist(); poll(refreshWorklist); }
  else if (role === "grassroots") { showMany(["submissions-view"]); await refreshSubmissions(); poll(refreshSubmissions); }
  else { showMany(["monitoring-view", "export-view"]); await refreshMonitoring(); }
}

function poll(fn) {
  clearInterval(state.timer); clearInterval(state.clock);
  state.timer = setInterval(() => fn().catch(() => {}), (state.me.poll_seconds || 5) * 1000);
  state.clock = setInterval(tickClocks, 1000);
}

function tickClocks() {
  for (const cell of document.querySelectorAll("[data-arrived]")) cell.firstChild.textContent = waiting(cell.dataset.arrived);
}

// --- worklist ------------------------------------------------------------------------------------
for (const id of ["#f-site", "#f-modality", "#f-level", "#f-status"]) $(id).addEventListener("change", () => refreshWorklist());

async function refreshWorklist() {
  if ($("#worklist-view").hidden) return;
  const params = new URLSearchParams();
  for (const [id, key] of [["#f-site", "site"], ["#f-modality", "modality"], ["#f-level", "level"], ["#f-status", "status"]]) {
    if ($(id).value) params.set(key, $(id).value);
  }
  const response = await api("/api/v1/worklist?" + params);
  if (!response.ok) return;
  const body = await response.json();
  state.items = body.items;
  const tbody = $("#worklist tbody");
  tbody.replaceChildren();
  for (const item of body.items) {
    if (!state.sites.has(item.site)) { state.sites.add(item.site); $("#f-site").append(el("option", { value: item.site }, item.site)); }
    const level = el("td", {}, el("span", { class: "level " + item.level }, item.level));
    if (item.triage_reasons && item.triage_reasons.length) level.append(el("span", { class: "reasons" }, item.triage_reasons.join("; ")));
    if (item.escalation) level.append(el("span", { class: "escalation" }, (item.overdue ? "OVERDUE: " : "escalated from " + item.ai_level + ": ") + item.escalation));
    const clock = el("td", { "data-arrived": item.arrived_at, class: item.overdue ? "overdue" : "" }, waiting(item.arrived_at));
    const findings = item.top_findings.map((f) => `${f.name} ${(f.probability * 100).toFixed(0)}%`).join(", ") || (item.status === "ai_failed" ? "AI read failed" : "—");
    const status = item.claimed_by ? `claimed by ${item.claimed_by}` : item.status.replace("_", " ");
    const row = el("tr", { "data-uid": item.study_uid, "data-level": item.level },
      level, clock, el("td", {}, item.site), el("td", {}, item.modality),
      el("td", {}, [item.patient_name, item.patient_sex, item.patient_age].filter(Boolean).join(" · ") || item.patient_id || "—"),
      el("td", {}, findings), el("td", {}, item.score === null ? "—" : item.score.toFixed(2)), el("td", {}, status));
    row.addEventListener("click", () => openStudy(item.study_uid));
    tbody.append(row);
  }
  $("#worklist-empty").hidden = body.items.length > 0;
  $("#updated").textContent = "updated " + new Date().toLocaleTimeString();
}

// --- study ---------------------------------------------------------------------------------------
$("#back-btn").addEventListener("click", async () => {
  state.study = null;
  if (state.me.role === "grassroots") { showMany(["submissions-view"]); await refreshSubmissions(); }
  else if (state.me.role === "admin") { showMany(ADMIN_VIEWS); await refreshWorklist(); await refreshAudit(); }
  else { showMany(["worklist-view"]); await refreshWorklist(); }
});

async function openStudy(uid) {
  const response = await api("/api/v1/studies/" + encodeURIComponent(uid));
  if (!response.ok) return;
  const study = await response.json();
  state.study = study;
  showMany(["study-view"]);
  const read = study.ai_read || {};
  const model = read.model || {};
  $("#study-head").replaceChildren(el("h2", {}, `${study.modality} · ${study.site} · ${study.patient_name || study.patient_id || "unknown patient"}`),
    el("p", { class: "muted" }, `Study ${study.study_uid} · arrived ${new Date(study.arrived_at).toLocaleString()} · AI level `, el("span", { class: "level " + (study.level || "none") }, study.level || "none yet")));
  $("#model-line").textContent = model.name ? `Model ${model.name} version ${model.version}${model.demo ? " (demo model)" : ""}` : (study.ai_error ? "AI read failed: " + study.ai_error : "No AI read");
  renderFindings(study);
  const dl = $("#measurements"); dl.replaceChildren();
  for (const [k, v] of Object.entries(read.measurements || {})) {
    if (typeof v !== "number") continue;  // numbers only; the method and warnings stay in the JSON
    dl.append(el("dt", {}, k.replaceAll("_", " ")), el("dd", {}, v.toFixed(1)));
  }
  $("#triage-reasons").textContent = (read.triage && read.triage.reasons && read.triage.reasons.length) ? "Triage: " + read.triage.reasons.join("; ") : "";
  renderReadingState(study);
  if (study.modality === "ECG") { $("#ecg-box").hidden = false; $("#image-box").hidden = true; await drawEcg(uid); }
  else { $("#ecg-box").hidden = true; $("#image-box").hidden = false; loadImage(uid); }
}

function renderFindings(study) {
  const tbody = $("#findings tbody"); tbody.replaceChildren();
  const final = (study.final_report && study.final_report.findings) || null;
  for (const f of ((study.ai_read || {}).findings || [])) {
    const box = el("input", { type: "checkbox", checked: final ? !!final[f.code] : f.positive });
    box.setAttribute("data-code", f.code);
    box.addEventListener("change", () => { $("#agree").checked = allMatchAi(); });
    tbody.append(el("tr", {}, el("td", {}, `${f.name} (${f.code})`), el("td", {}, (f.probability * 100).toFixed(1) + "%"),
      el("td", {}, f.positive ? "yes" : "no"), el("td", {}, box)));
  }
}

function allMatchAi() {
  const ai = Object.fromEntries(((state.study.ai_read || {}).findings || []).map((f) => [f.code, f.positive]));
  return [...document.querySelectorAll("#findings input[data-code]")].every((b) => b.checked === ai[b.dataset.code]);
}

function renderReadingState(study) {
  const signed = study.report_status === "final" || study.report_status === "amended";
  $("#prelim-banner").className = signed ? "banner final" : "banner";
  $("#prelim-banner").textContent = signed ? `Signed report (${study.report_status}) by ${study.signed_by}` : "Preliminary AI read — not a diagnosis. A doctor must review and sign.";
  const canRead = state.me.role === "reader" || state.me.role === "admin";
  $("#reading-actions").hidden = !canRead;
  const mine = study.claimed_by === state.me.user;
  $("#claim-state").textContent = study.claimed_by ? `Claimed by ${study.claimed_by} until ${new Date(study.claim_expires_at).toLocaleTimeString()}` : (signed ? "Signed; claim it to amend." : "Not claimed.");
  $("#claim-btn").disabled = !!study.claimed_by && !mine;
  $("#claim-btn").textContent = mine ? "Extend claim" : "Claim";
  $("#release-btn").disabled = !mine;
  $("#sign-btn").disabled = !mine;
  const box = $("#final-report");
  if (signed && study.final_report) {
    box.hidden = false;
    box.replaceChildren(el("h3", {}, "Final report"), el("p", { class: "report" }, study.final_report.impression || "(no impression)"),
      el("p", { class: "muted" }, `Signed by ${study.signed_by} at ${new Date(study.signed_at).toLocaleString()}`));
  } else box.hidden = true;
}

async function reloadStudy() { if (state.study) await openStudy(state.study.study_uid); }

$("#claim-btn").addEventListener("click", async () => {
  const r = await api(`/api/v1/studies/${encodeURIComponent(state.study.study_uid)}/claim`, { method: "POST" });
  $("#reading-msg").textContent = r.ok ? "Claimed." : "Could not claim: " + (await r.json()).detail;
  await reloadStudy();
});
$("#release-btn").addEventListener("click", async () => {
  const r = await api(`/api/v1/studies/${encodeURIComponent(state.study.study_uid)}/release`, { method: "POST" });
  $("#reading-msg").textContent = r.ok ? "Released." : "Could not release: " + (await r.json()).detail;
  await reloadStudy();
});
$("#sign-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const findings = {};
  for (const box of document.querySelectorAll("#findings input[data-code]")) findings[box.dataset.code] = box.checked;
  const r = await api(`/api/v1/studies/${encodeURIComponent(state.study.study_uid)}/sign`, { method: "POST",
    json: { agree: $("#agree").checked && allMatchAi(), findings, impression: $("#impression").value } });
  const body = await r.json();
  $("#reading-msg").textContent = r.ok ? `Signed (${body.report.status}).` : "Could not sign: " + JSON.stringify(body.detail);
  await reloadStudy();
});

// --- ECG drawing: 3x4 + lead II rhythm strip at 25 mm/s and 10 mm/mV on a red grid -----------------
const LAYOUT = [["I", "aVR", "V1", "V4"], ["II", "aVL", "V2", "V5"], ["III", "aVF", "V3", "V6"]];

async function drawEcg(uid) {
  const canvas = $("#ecg");
  const ctx = canvas.getContext("2d");
  const response = await api(`/api/v1/studies/${encodeURIComponent(uid)}/ecg`);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!response.ok) { ctx.fillText("ECG not available: " + response.status, 20, 20); return; }
  const ecg = await response.json();
  const px = 4;                        // pixels per millimetre
  const margin = 5 * px, rowMm = 37.5; // 4 rows of 37.5 mm
  const widthMm = 250, seconds = 10;   // 10 s at 25 mm/s
  canvas.width = widthMm * px + 2 * margin;
  canvas.height = Math.round(4 * rowMm * px + 2 * margin);
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  // grid: 1 mm fine lines, 5 mm bold lines
  for (let mm = 0; mm <= widthMm; mm++) line(ctx, margin + mm * px, margin, margin + mm * px, margin + 4 * rowMm * px, mm % 5 ? "#f7c9c9" : "#e58a8a", mm % 5 ? 0.5 : 1);
  for (let mm = 0; mm <= 4 * rowMm; mm++) line(ctx, margin, margin + mm * px, margin + widthMm * px, margin + mm * px, mm % 5 ? "#f7c9c9" : "#e58a8a", mm % 5 ? 0.5 : 1);
  const fs = ecg.sampling_rate;
  const mmPerSample = 25 / fs, mmPerMv = 10;
  const trace = (samples, x0mm, baselineMm) => {
    ctx.beginPath(); let started = false;
    for (let i = 0; i < samples.length; i++) {
      const v = samples[i];
      if (v === null) { started = false; continue; }
      const x = margin + (x0mm + i * mmPerSample) * px, y = margin + (baselineMm - v * mmPerMv) * px;
      if (started) ctx.lineTo(x, y); else { ctx.moveTo(x, y); started = true; }
    }
    ctx.strokeStyle = "#111"; ctx.lineWidth = 1.2; ctx.stroke();
  };
  const perColumn = Math.round(2.5 * fs);
  ctx.font = "bold 13px sans-serif"; ctx.fillStyle = "#111";
  LAYOUT.forEach((row, r) => {
    const baseline = rowMm * r + rowMm / 2;
    row.forEach((lead, c) => {
      const samples = (ecg.leads[lead] || []).slice(c * perColumn, (c + 1) * perColumn);
      trace(samples, c * 62.5, baseline);
      ctx.fillText(lead, margin + (c * 62.5 + 1.5) * px, margin + (baseline - 12) * px);
      if (c) line(ctx, margin + c * 62.5 * px, margin + (baseline - 3) * px, margin + c * 62.5 * px, margin + (baseline + 3) * px, "#111", 1.5);
    });
  });
  const rhythmBaseline = rowMm * 3 + rowMm / 2;
  trace((ecg.leads["II"] || []).slice(0, Math.round(seconds * fs)), 0, rhythmBaseline);
  ctx.fillText("II (rhythm)", margin + 1.5 * px, margin + (rhythmBaseline - 12) * px);
  ctx.font = "12px sans-serif";
  ctx.fillText("25 mm/s   10 mm/mV", canvas.width - margin - 130, canvas.height - 6);
  canvas.dataset.drawn = "true";
}

function line(ctx, x1, y1, x2, y2, color, width) {
  ctx.beginPath(); ctx.moveTo(x1, y1); ctx.lineTo(x2, y2); ctx.strokeStyle = color; ctx.lineWidth = width; ctx.stroke();
}

// --- images: window/level and heatmap overlay ---------------------------------------------------------
async function fetchImage(path, onResponse) {
  const r = await api(path);
  if (!r.ok) return null;
  if (onResponse) onResponse(r);
  return URL.createObjectURL(await r.blob());
}

function setSrc(img, url) {  // one object URL per picture: free the one it replaces
  if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
  img.src = url;
}

let imageRequest = 0;
async function loadImage(uid, windowed) {
  const request = ++imageRequest;  // a slower earlier answer must not replace a later one
  const base = `/api/v1/studies/${encodeURIComponent(uid)}`;
  const query = windowed ? `?window=${$("#ww").value}&level=${$("#wl").value}` : "";
  const url = await fetchImage(base + "/image.png" + query, (r) => {
    // start the sliders at the image's own window (its units: 8-bit, 12-bit, HU ...), not a fixed 4096
    const ww = parseFloat(r.headers.get("X-Window-Width")), wc = parseFloat(r.headers.get("X-Window-Center"));
    if (windowed || request !== imageRequest || !(ww > 0) || !Number.isFinite(wc)) return;
    const span = Math.max(ww, 2);
    $("#ww").max = String(Math.ceil(span * 2)); $("#ww").value = String(Math.round(ww));
    $("#wl").min = String(Math.floor(wc - span)); $("#wl").max = String(Math.ceil(wc + span)); $("#wl").value = String(Math.round(wc));
  });
  if (request !== imageRequest) { if (url) URL.revokeObjectURL(url); return; }
  $("#image-missing").hidden = !!url;
  $("#study-image").hidden = !url;
  if (url) setSrc($("#study-image"), url); else $("#image-missing").textContent = "The image is not available yet.";
  if (!windowed) {
    const heat = await fetchImage(base + "/heatmap.png");
    if (request !== imageRequest) { if (heat) URL.revokeObjectURL(heat); return; }
    $("#heatmap-toggle").disabled = !heat;
    if (heat) setSrc($("#heatmap-image"), heat);
    $("#heatmap-image").hidden = !heat || !$("#heatmap-toggle").checked;
  }
}
$("#heatmap-toggle").addEventListener("change", () => { $("#heatmap-image").hidden = !$("#heatmap-toggle").checked; });
for (const id of ["#ww", "#wl"]) $(id).addEventListener("change", () => state.study && loadImage(state.study.study_uid, true));
$("#wl-reset").addEventListener("click", () => state.study && loadImage(state.study.study_uid, false));

// --- grassroots ------------------------------------------------------------------------------------
async function refreshSubmissions() {
  if ($("#submissions-view").hidden) return;
  const response = await api("/api/v1/submissions");
  if (!response.ok) return;
  const body = await response.json();
  const tbody = $("#submissions tbody"); tbody.replaceChildren();
  for (const item of body.items) {
    const report = item.report ? el("div", {}, el("strong", {}, item.report_status + ": "), item.report.impression || "(no impression)",
      el("div", { class: "muted" }, "signed by " + item.signed_by)) : el("span", { class: "muted" }, "waiting for a doctor (preliminary AI read only)");
    const row = el("tr", { "data-uid": item.study_uid, "data-report": item.report_status },
      el("td", {}, new Date(item.arrived_at).toLocaleString()), el("td", {}, item.modality), el("td", {}, item.patient_id || "—"),
      el("td", {}, item.status.replace("_", " ")), el("td", {}, item.ai_level ? el("span", { class: "level " + item.ai_level }, item.ai_level) : "—"),
      el("td", {}, report));
    row.addEventListener("click", () => openStudy(item.study_uid));
    tbody.append(row);
  }
}

// --- audit (admins) ---------------------------------------------------------------------------------
async function refreshAudit() {
  const r = await api("/api/v1/audit?limit=50");
  if (!r.ok) return;
  const body = await r.json();
  const chain = body.chain;
  $("#audit-chain").textContent = chain.ok ? `Hash chain intact (${chain.checked} entries checked).`
    : `TAMPERING DETECTED at entry ${chain.first_bad_id}: ${chain.reason}`;
  $("#audit-chain").className = chain.ok ? "muted" : "error";
  const tbody = $("#audit tbody"); tbody.replaceChildren();
  for (const e of body.entries) {
    tbody.append(el("tr", {}, el("td", {}, new Date(e.at).toLocaleString()), el("td", {}, e.user || ""), el("td", {}, e.role || ""),
      el("td", {}, e.action), el("td", {}, e.study_uid || ""), el("td", {}, e.client || "")));
  }
}
$("#audit-refresh").addEventListener("click", () => refreshAudit());

// --- data science ------------------------------------------------------------------------------------
// Monitoring is fetched on demand (Refresh, or a changed filter), not polled: the tables cover every
// signed read and are heavier than a worklist page.
const pct = (v) => v === null || v === undefined ? "—" : (v * 100).toFixed(0) + "%";
const num = (v, digits = 2) => v === null || v === undefined ? "—" : Number(v).toFixed(digits);

async function refreshMonitoring() {
  if ($("#monitoring-view").hidden) return;
  const params = new URLSearchParams({ freq: $("#m-freq").value });
  if ($("#m-modality").value) params.set("modality", $("#m-modality").value);
  const r = await api("/api/v1/monitoring?" + params);
  if (!r.ok) { $("#m-caption").textContent = "Monitoring unavailable: " + r.status; return; }
  const body = await r.json();
  $("#m-caption").textContent = `${body.signed_reads} signed reads` + (body.sites ? ` at ${body.sites.join(", ")}` : " at all sites") +
    `. Rows with fewer than ${body.bands.min_rows} cases are greyed; PSI ≥ ${body.bands.psi_moderate} is a moderate and ≥ ${body.bands.psi_large} a large shift.`;
  const fill = (selector, rows, cells, rowClass) => {
    const tbody = $(selector + " tbody"); tbody.replaceChildren();
    for (const row of rows) tbody.append(el("tr", { class: rowClass ? rowClass(row) : "" }, ...cells(row).map((c) => el("td", {}, c))));
    if (!rows.length) tbody.append(el("tr", {}, el("td", { colSpan: 10, class: "muted" }, "No data yet.")));
  };
  fill("#m-summary", body.summary, (s) => [s.modality, s.finding, s.n, s.ai_pos, s.final_pos, pct(s.agreement), num(s.kappa), pct(s.sensitivity), pct(s.ppv)],
    (s) => s.n < body.bands.min_rows ? "few" : "");
  fill("#m-agreement", body.agreement, (a) => [a.period, a.site, a.finding, a.n, pct(a.agreement), num(a.kappa), pct(a.sensitivity), pct(a.ppv)],
    (a) => a.few_cases ? "few" : "");
  fill("#m-drift", body.drift, (d) => [d.period, d.site, d.finding, d.n, num(d.mean_probability), num(d.psi), num(d.ks), num(d.mean_age, 0), pct(d.female_share), d.flag || ""],
    (d) => d.flag ? (d.flag.startsWith("large") ? "drift-large" : "drift-moderate") : "");
  params.set("metric", $("#m-metric").value);
  const chart = await fetchImage("/api/v1/monitoring/agreement.png?" + params);
  $("#m-chart").hidden = !chart;
  if (chart) setSrc($("#m-chart"), chart);
}
for (const id of ["#m-freq", "#m-modality", "#m-metric"]) $(id).addEventListener("change", () => refreshMonitoring());
$("#m-refresh").addEventListener("click", () => refreshMonitoring());

$("#export-btn").addEventListener("click", async () => {
  const r = await api("/api/v1/exports/signed-reads");
  if (!r.ok) { $("#export-msg").textContent = "Export refused."; return; }
  const body = await r.json();
  const link = el("a", { href: URL.createObjectURL(new Blob([JSON.stringify(body.rows, null, 1)], { type: "application/json" })), download: "signed-reads.json" }, `signed-reads.json (${body.count} rows)`);
  $("#export-msg").replaceChildren(link);
});

if (state.token) start().catch(() => logoutLocal("")); else showMany(["login-view"]);
