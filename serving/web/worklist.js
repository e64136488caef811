// The reading worklist: pages over thousands of studies (offset paging with the total shown), filters
// kept in the URL (#/worklist?level=critical&page=3), a link per study, keyboard moves.
"use strict";

import { $, api, el, go, route, state, studyLink, waiting } from "/static/core.js";
import { findingName, formatTime, levelName, statusName, t, term } from "/static/i18n.js";

const FILTERS = [["#f-site", "site"], ["#f-modality", "modality"], ["#f-level", "level"], ["#f-status", "status"]];
const PAGE_SIZES = [25, 50, 100, 200];

export function worklistParams() {
  const params = route().params;
  const page = Math.max(1, parseInt(params.get("page") || "1", 10) || 1);
  const size = PAGE_SIZES.includes(parseInt(params.get("size"), 10)) ? parseInt(params.get("size"), 10) : 50;
  return { params, page, size };
}

// The filters and page in the URL: a reload, a bookmark or the back button shows the same page.
function setWorklistUrl(changes) {
  const { params } = worklistParams();
  for (const [key, value] of Object.entries(changes)) {
    if (value === null || value === "" || value === undefined) params.delete(key); else params.set(key, String(value));
  }
  go("#/worklist" + (params.toString() ? "?" + params : ""));
}

export function bindWorklist(openSelected) {
  for (const [id, key] of FILTERS) $(id).addEventListener("change", () => setWorklistUrl({ [key]: $(id).value, page: null }));
  $("#page-size").addEventListener("change", () => setWorklistUrl({ size: $("#page-size").value, page: null }));
  $("#page-first").addEventListener("click", () => setWorklistUrl({ page: null }));
  $("#page-prev").addEventListener("click", () => setWorklistUrl({ page: Math.max(1, worklistParams().page - 1) }));
  $("#page-next").addEventListener("click", () => setWorklistUrl({ page: worklistParams().page + 1 }));
  document.addEventListener("keydown", (event) => {
    if ($("#worklist-view").hidden || !$("#study-view").hidden || typing(event)) return;
    if (event.key === "j" || event.key === "ArrowDown") { select(state.selected + 1); event.preventDefault(); }
    else if (event.key === "k" || event.key === "ArrowUp") { select(state.selected - 1); event.preventDefault(); }
    else if (event.key === "Enter" && state.selected >= 0) { openSelected(state.items[state.selected].study_uid); }
    else if (event.key === "n" || event.key === "PageDown") { $("#page-next").click(); }
    else if (event.key === "p" || event.key === "PageUp") { $("#page-prev").click(); }
  });
}

export function typing(event) {
  const tag = (event.target && event.target.tagName) || "";
  return ["INPUT", "TEXTAREA", "SELECT"].includes(tag) || event.ctrlKey || event.metaKey || event.altKey;
}

function select(index) {
  const rows = [...document.querySelectorAll("#worklist tbody tr[data-uid]")];
  if (!rows.length) return;
  state.selected = Math.max(0, Math.min(rows.length - 1, index));
  rows.forEach((row, i) => row.classList.toggle("selected", i === state.selected));
  rows[state.selected].scrollIntoView({ block: "nearest" });
}

// The reason shown beside a row is built from the same level and score the row shows (never a stale
// "score 0.50" beside a 0.80), then the findings that drove it and the rules that fired.
export function reasonText(item) {
  if (item.score === null || item.score === undefined) return "";
  const parts = [t("worklist.reason_score", { score: item.score.toFixed(2), level: levelName(item.level) })];
  const driving = (item.top_findings || []).map((f) => findingName(item.modality, f.code, f.name));
  if (driving.length) parts.push(t("worklist.reason_from", { finding: driving.join("、") }));
  parts.push(...ruleReasons(item.triage_reasons));
  return parts.join(" · ");
}

// The triage rules that fired, in the page's locale (the catalog is keyed by the rule's English text).
// The read's own score line (models/triage.py: "STE weighted 0.62 ≥ urgent threshold 0.50"; reads
// stored before it say "score 0.50 from STE") is left out: the score shown is the row's, after the
// level's floor and aging, so only the row's score may be printed beside it.
export const SCORE_REASON = /^(score [0-9.]+ from |\S+ weighted [0-9.]+ ≥ )/;

export function ruleReasons(reasons) {
  return (reasons || []).filter((r) => !SCORE_REASON.test(r)).map((r) => term("triage", r, r));
}

export async function refreshWorklist() {
  if ($("#worklist-view").hidden) return;
  const { params, page, size } = worklistParams();
  const query = new URLSearchParams({ limit: String(size), offset: String((page - 1) * size) });
  for (const [id, key] of FILTERS) {
    const value = params.get(key) || "";
    if ($(id).value !== value) {
      if (key === "site" && value && !state.sites.has(value)) { state.sites.add(value); $("#f-site").append(el("option", { value }, value)); }
      $(id).value = value;
    }
    if (value) query.set(key, value);
  }
  $("#page-size").value = String(size);
  const response = await api("/api/v1/worklist?" + query);
  if (!response.ok) return;
  const body = await response.json();
  state.items = body.items;
  state.total = body.total;
  renderRows(body.items, (page - 1) * size);
  const first = body.total ? (page - 1) * size + 1 : 0, last = (page - 1) * size + body.items.length;
  $("#page-range").textContent = t("worklist.range", { first, last, total: body.total });
  $("#page-prev").disabled = page <= 1;
  $("#page-first").disabled = page <= 1;
  $("#page-next").disabled = last >= body.total;
  $("#worklist-empty").hidden = body.items.length > 0;
  $("#updated").textContent = t("worklist.updated", { time: formatTime(new Date().toISOString()) });
  if (state.selected >= body.items.length) state.selected = body.items.length - 1;
  if (state.selected >= 0) select(state.selected);
}

// A DICOM person name as people write it: components joined (with a space in Latin script, without one
// in Chinese), its groups (alphabetic=ideographic) side by side: "Li^Si=李^四" → "Li Si / 李四".
export function personName(name) {
  if (!name) return "";
  const cjk = /[\u3400-\u9fff\uf900-\ufaff]/;
  return name.split("=").filter(Boolean).map((group) => {
    const parts = group.split("^").filter(Boolean);
    return cjk.test(group) ? parts.join("") : parts.join(" ");
  }).join(" / ");
}

function patientCell(item) {
  return [personName(item.patient_name), item.patient_sex, item.patient_age].filter(Boolean).join(" · ") || item.patient_id || "—";
}

function renderRows(items, offset) {
  const tbody = $("#worklist tbody");
  tbody.replaceChildren();
  items.forEach((item, i) => {
    if (!state.sites.has(item.site)) { state.sites.add(item.site); $("#f-site").append(el("option", { value: item.site }, item.site)); }
    const level = el("td", {}, el("span", { class: "level " + item.level }, levelName(item.level)));
    const reason = reasonText(item);
    if (reason) level.append(el("span", { class: "reasons" }, reason));
    if (item.escalation) {
      level.append(el("span", { class: "escalation" }, item.overdue ? t("worklist.overdue", { text: item.escalation })
        : t("worklist.escalated", { level: levelName(item.ai_level), text: item.escalation })));
    }
    const clock = el("td", { "data-arrived": item.arrived_at, class: item.overdue ? "overdue" : "" }, waiting(item.arrived_at));
    const findings = item.top_findings.map((f) => `${findingName(item.modality, f.code, f.name)} ${(f.probability * 100).toFixed(0)}%`).join("，")
      || (item.status === "ai_failed" ? t("worklist.ai_failed") : "—");
    const status = item.claimed_by ? t("worklist.claimed_by", { user: item.claimed_by }) : statusName(item.status);
    const link = el("a", { href: studyLink(item.study_uid), class: "study-link" }, String(offset + i + 1));
    const row = el("tr", { "data-uid": item.study_uid, "data-level": item.level, "data-index": String(offset + i + 1) },
      el("td", { class: "num" }, link), level, clock, el("td", {}, item.site), el("td", {}, term("report", "kind." + (item.modality === "ECG" ? "ECG" : "CXR"), item.modality)),
      el("td", { class: "patient" }, patientCell(item)), el("td", { class: "findings" }, findings),
      el("td", { class: "num" }, item.score === null ? "—" : item.score.toFixed(2)), el("td", {}, status));
    row.addEventListener("click", (event) => { if (event.target.tagName !== "A") go(studyLink(item.study_uid)); });
    tbody.append(row);
  });
}

// Next/previous study from the study view: the neighbours on the current worklist page (then the page
// boundary moves the page).
export function neighbour(uid, step) {
  const index = state.items.findIndex((item) => item.study_uid === uid);
  if (index < 0) return null;
  const next = state.items[index + step];
  return next ? next.study_uid : null;
}
