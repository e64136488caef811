// One study: the AI read (findings, measurements beside the machine's and the prior's, statements,
// quality, triage), the comparison with the prior, claim / release / sign, the printable report.
"use strict";

import { $, api, detail, el, state } from "/static/core.js";
import { drawEcg, fetchEcg, fitZoom, scaleCaption, ZOOMS } from "/static/ecg.js";
import { findingName, formatDateTime, formatTime, levelName, measurementName, measurementUnit, qualityText,
         statementName, statusName, t, term } from "/static/i18n.js";
import { loadImages } from "/static/image.js";
import { personName, ruleReasons } from "/static/worklist.js";

const MEASURES = ["heart_rate_bpm", "pr_interval_ms", "p_duration_ms", "qrs_duration_ms", "qt_interval_ms", "qtc_bazett_ms",
                  "qtc_fridericia_ms", "p_axis_deg", "qrs_axis_deg", "t_axis_deg"];
const ecgView = { zoom: null, current: null, prior: null };

export async function openStudy(uid) {
  const response = await api("/api/v1/studies/" + encodeURIComponent(uid));
  if (!response.ok) { $("#study-error").hidden = false; $("#study-error").textContent = t("study.not_found"); return null; }
  $("#study-error").hidden = true;
  const study = await response.json();
  state.study = study;
  const read = study.ai_read || {};
  const prior = read.prior ? await priorStudy(read.prior.study_uid) : null;
  renderHead(study, read);
  renderFindings(study);
  renderMeasurements(read, prior);
  renderStatements(read);
  for (const node of document.querySelectorAll(".ecg-only")) node.hidden = study.modality !== "ECG";
  renderQuality(read);
  renderPrior(read, prior);
  renderReadingState(study);
  if (study.modality === "ECG") {
    $("#ecg-box").hidden = false; $("#image-box").hidden = true;
    ecgView.current = await fetchEcg(uid);
    ecgView.prior = prior ? await fetchEcg(prior.study_uid) : null;
    redrawEcg();
  } else {
    $("#ecg-box").hidden = true; $("#image-box").hidden = false;
    $("#prior-caption").textContent = prior ? t("image.prior", { date: read.prior.date || "" }) : "";
    await loadImages(uid, prior ? prior.study_uid : null, false);
  }
  return study;
}

async function priorStudy(uid) {
  const response = await api("/api/v1/studies/" + encodeURIComponent(uid));
  return response.ok ? response.json() : null;
}

function renderHead(study, read) {
  const model = read.model || {};
  $("#study-head").replaceChildren(
    el("h2", {}, `${term("report", "kind." + (study.modality === "ECG" ? "ECG" : "CXR"), study.modality)} · ${study.site} · ${personName(study.patient_name) || study.patient_id || t("study.unknown_patient")}`),
    el("p", { class: "muted" }, t("study.head", { uid: study.study_uid, time: formatDateTime(study.arrived_at) }), " ",
      el("span", { class: "level " + (study.level || "none") }, study.level ? levelName(study.level) : t("worklist.no_level")),
      " ", el("a", { href: "#/study/" + encodeURIComponent(study.study_uid), id: "study-link" }, t("study.link"))));
  $("#model-line").textContent = model.name ? t("study.model", { name: model.name, version: model.version }) + (model.demo ? " " + t("study.demo_model") : "")
    : (study.ai_error ? t("study.ai_failed", { error: study.ai_error }) : t("study.no_ai"));
  const triage = read.triage;
  $("#triage-reasons").textContent = triage ? `${t("study.triage")}：` + [t("worklist.reason_score", { score: Number(triage.score).toFixed(2), level: levelName(triage.level) }),
    ...ruleReasons(triage.reasons)].join(" · ") : "";
}

function renderFindings(study) {
  const tbody = $("#findings tbody"); tbody.replaceChildren();
  const final = (study.final_report && study.final_report.findings) || null;
  for (const f of ((study.ai_read || {}).findings || [])) {
    const box = el("input", { type: "checkbox", checked: final ? !!final[f.code] : f.positive });
    box.setAttribute("data-code", f.code);
    box.addEventListener("change", () => { $("#agree").checked = allMatchAi(); });
    tbody.append(el("tr", {}, el("td", {}, `${findingName(study.modality, f.code, f.name)} (${f.code})`),
      el("td", { class: "num" }, (f.probability * 100).toFixed(1) + "%"), el("td", {}, (f.positive ? t("study.yes") : t("study.no")) + (f.drives_level === false ? ` (${t("study.not_level")})` : "")), el("td", {}, box)));
  }
}

export function allMatchAi() {
  const ai = Object.fromEntries(((state.study.ai_read || {}).findings || []).map((f) => [f.code, f.positive]));
  return [...document.querySelectorAll("#findings input[data-code]")].every((b) => b.checked === ai[b.dataset.code]);
}

const fmt = (v) => (typeof v === "number" ? v.toFixed(0) : "—");

function renderMeasurements(read, prior) {
  const machine = (read.machine && (read.machine.measurements || read.machine)) || null;
  const priorMeasures = prior && prior.ai_read ? prior.ai_read.measurements || {} : null;
  const deltas = (read.prior && read.prior.deltas) || {};
  const head = [t("study.col.measure"), t("study.col.ours")];
  if (machine) head.push(t("study.col.machine"));
  if (priorMeasures) head.push(t("study.col.prior"), t("study.col.delta"));
  const table = $("#measurements");
  table.replaceChildren(el("thead", {}, el("tr", {}, ...head.map((h) => el("th", {}, h)))));
  const body = el("tbody");
  const keys = MEASURES.filter((k) => typeof (read.measurements || {})[k] === "number" || (machine && typeof machine[k] === "number"));
  for (const key of keys) {
    const unit = measurementUnit(key);
    const cells = [el("td", {}, measurementName(key) + (unit ? ` (${unit})` : "")), el("td", { class: "num" }, fmt((read.measurements || {})[key]))];
    if (machine) cells.push(el("td", { class: "num machine" }, fmt(machine[key])));
    if (priorMeasures) {
      const delta = typeof deltas[key] === "number" ? deltas[key] : null;
      cells.push(el("td", { class: "num" }, fmt(priorMeasures[key])),
        el("td", { class: "num delta", "data-key": key }, delta === null ? "—" : (delta > 0 ? "+" : "") + delta.toFixed(0)));
    }
    body.append(el("tr", {}, ...cells));
  }
  table.append(body);
}

function renderStatements(read) {
  const list = $("#statements"); list.replaceChildren();
  for (const s of read.statements || []) list.append(el("li", { "data-code": s.code }, statementName(s.code, s.name)));
  if (!(read.statements || []).length) list.append(el("li", { class: "muted" }, t("study.no_statements")));
}

function renderQuality(read) {
  const quality = read.quality || { acceptable: true, reasons: [] };
  const box = $("#quality"); box.replaceChildren();
  box.className = quality.acceptable ? "muted" : "quality-bad";
  if (quality.acceptable) { box.append(t("study.quality_ok")); return; }
  box.append(el("strong", {}, t("study.quality_bad")), ...quality.reasons.map((r) => el("div", { "data-code": r.code }, qualityText(r))));
}

function renderPrior(read, prior) {
  const box = $("#prior"); box.replaceChildren();
  if (!read.prior) { box.append(el("p", { class: "muted", id: "no-prior" }, t("study.no_prior"))); return; }
  box.append(el("p", { id: "prior-sentence" }, priorSentence(read, prior)));
  const p = read.prior;
  if (prior) box.append(el("a", { href: "#/study/" + encodeURIComponent(p.study_uid) }, t("study.prior_open")));
}

// 与 2026-11-02 心电图比较：新出现心房颤动；窦性心律已消失 — rebuilt from the codes in the page's locale
// (the stored ``text`` is in the locale the read was made in), like serving/reading/priors.py.
function priorSentence(read, prior) {
  const p = read.prior, ecg = read.modality === "ECG";
  const priorRead = (prior && prior.ai_read) || {};
  const names = Object.fromEntries([...(priorRead.statements || []), ...(read.statements || []), ...(priorRead.findings || []), ...(read.findings || [])]
    .map((x) => [x.code, x.name]));
  const name = (code) => (ecg ? statementName(code, names[code]) : findingName(read.modality, code, names[code]));
  const list = (codes) => codes.map(name).join(term("report", "list_separator"));
  const clauses = [];
  if (p.new_statements.length) clauses.push(term("report", "prior.new", null, { items: list(p.new_statements) }));
  if (p.resolved_statements.length) clauses.push(term("report", "prior.resolved", null, { items: list(p.resolved_statements) }));
  if (!clauses.length) clauses.push(term("report", "prior.unchanged"));
  const kind = term("report", "kind." + (ecg ? "ECG" : "CXR"), read.modality);
  return term("report", "prior.prefix", null, { kind, date: p.date || "?" }) + clauses.join(term("report", "prior.clause_separator"));
}

export function redrawEcg() {
  if (ecgView.zoom === null) ecgView.zoom = fitZoom($("#ecg-box").clientWidth - 4);
  $("#ecg-scale").textContent = scaleCaption(ecgView.zoom);
  if (ecgView.current) drawEcg($("#ecg"), ecgView.current, ecgView.zoom);
  $("#ecg-prior-box").hidden = !ecgView.prior;
  if (ecgView.prior) {
    $("#ecg-prior-caption").textContent = t("ecg.prior", { date: (state.study.ai_read.prior || {}).date || "" });
    drawEcg($("#ecg-prior"), ecgView.prior, ecgView.zoom);
  }
}

export function zoomEcg(step) {
  const i = Math.max(0, Math.min(ZOOMS.length - 1, ZOOMS.indexOf(ecgView.zoom || 1) + step));
  ecgView.zoom = step === 0 ? 1 : ZOOMS[i];
  redrawEcg();
}

export function renderReadingState(study) {
  const signed = study.report_status === "final" || study.report_status === "amended";
  $("#prelim-banner").className = signed ? "banner final" : "banner";
  $("#prelim-banner").textContent = signed ? t("study.signed_banner", { status: statusName(study.report_status), user: study.signed_by })
    : term("disclaimer", "preliminary");
  const canRead = state.me.role === "reader" || state.me.role === "admin";
  $("#reading-actions").hidden = !canRead;
  const mine = study.claimed_by === state.me.user;
  $("#claim-state").textContent = study.claimed_by ? t("study.claimed_by", { user: study.claimed_by, time: formatTime(study.claim_expires_at) })
    : (signed ? t("study.signed_claim_to_amend") : t("study.not_claimed"));
  $("#claim-btn").disabled = !!study.claimed_by && !mine;
  $("#claim-btn").textContent = mine ? t("study.extend") : t("study.claim");
  $("#release-btn").disabled = !mine;
  $("#sign-btn").disabled = !mine;
  const box = $("#final-report");
  if (signed && study.final_report) {
    box.hidden = false;
    const pdf = el("a", { href: "#", id: "pdf-link" }, t("study.download_pdf"));
    pdf.addEventListener("click", (event) => { event.preventDefault(); downloadPdf(study.study_uid); });
    box.replaceChildren(el("h3", {}, t("study.final_report")), el("p", { class: "report" }, study.final_report.impression || t("study.no_impression")),
      el("p", { class: "muted" }, t("study.signed_by", { user: study.signed_by, time: formatDateTime(study.signed_at) })), pdf);
  } else box.hidden = true;
}

async function downloadPdf(uid) {
  const r = await api(`/api/v1/studies/${encodeURIComponent(uid)}/report.pdf`);
  if (!r.ok) { $("#reading-msg").textContent = await detail(r); return; }
  const link = el("a", { href: URL.createObjectURL(await r.blob()), download: `report-${uid}.pdf` });
  document.body.append(link); link.click(); link.remove();
}

export async function claim() {
  const r = await api(`/api/v1/studies/${encodeURIComponent(state.study.study_uid)}/claim`, { method: "POST" });
  $("#reading-msg").textContent = r.ok ? t("study.claimed") : t("study.claim_failed", { reason: await detail(r) });
  await openStudy(state.study.study_uid);
}
export async function release() {
  const r = await api(`/api/v1/studies/${encodeURIComponent(state.study.study_uid)}/release`, { method: "POST" });
  $("#reading-msg").textContent = r.ok ? t("study.released") : t("study.release_failed", { reason: await detail(r) });
  await openStudy(state.study.study_uid);
}
export async function sign() {
  const findings = {};
  for (const box of document.querySelectorAll("#findings input[data-code]")) findings[box.dataset.code] = box.checked;
  const r = await api(`/api/v1/studies/${encodeURIComponent(state.study.study_uid)}/sign`, { method: "POST",
    json: { agree: $("#agree").checked && allMatchAi(), findings, impression: $("#impression").value } });
  if (r.ok) { const body = await r.json(); $("#reading-msg").textContent = t("study.signed", { status: statusName(body.report.status) }); }
  else $("#reading-msg").textContent = t("study.sign_failed", { reason: await detail(r) });
  await openStudy(state.study.study_uid);
}
