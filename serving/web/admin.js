// The clinic's submissions, the audit trail (admins), model monitoring and exports (data science).
"use strict";

import { $, api, el, fetchImage, setSrc, studyLink } from "/static/core.js";
import { formatDateTime, levelName, statusName, t } from "/static/i18n.js";

// The clinic's list pages like the worklist (100 a page, newest first, the total shown).
const SUBMISSIONS_PAGE = 100;
let submissionsOffset = 0;

export async function refreshSubmissions() {
  if ($("#submissions-view").hidden) return;
  const response = await api(`/api/v1/submissions?limit=${SUBMISSIONS_PAGE}&offset=${submissionsOffset}`);
  if (!response.ok) return;
  const body = await response.json();
  const tbody = $("#submissions tbody"); tbody.replaceChildren();
  for (const item of body.items) {
    const report = item.report ? el("div", {}, el("strong", {}, statusName(item.report_status) + "："), item.report.impression || t("study.no_impression"),
      el("div", { class: "muted" }, t("submissions.signed_by", { user: item.signed_by }))) : el("span", { class: "muted" }, t("submissions.waiting"));
    const row = el("tr", { "data-uid": item.study_uid, "data-report": item.report_status },
      el("td", {}, el("a", { href: studyLink(item.study_uid) }, formatDateTime(item.arrived_at))), el("td", {}, item.modality), el("td", {}, item.patient_id || "—"),
      el("td", {}, statusName(item.status)), el("td", {}, item.ai_level ? el("span", { class: "level " + item.ai_level }, levelName(item.ai_level)) : "—"),
      el("td", {}, report));
    row.addEventListener("click", (event) => { if (event.target.tagName !== "A") location.hash = studyLink(item.study_uid); });
    tbody.append(row);
  }
  const first = body.items.length ? submissionsOffset + 1 : 0, last = submissionsOffset + body.items.length;
  $("#submissions-more").textContent = t("worklist.range", { first, last, total: body.total });
  $("#sub-prev").disabled = submissionsOffset === 0;
  $("#sub-next").disabled = last >= body.total;
}

export async function refreshAudit() {
  const r = await api("/api/v1/audit?limit=50");
  if (!r.ok) return;
  const body = await r.json();
  const chain = body.chain;
  $("#audit-chain").textContent = chain.ok ? t("audit.chain_ok", { n: chain.checked }) : t("audit.chain_bad", { id: chain.first_bad_id, reason: chain.reason });
  $("#audit-chain").className = chain.ok ? "muted" : "error";
  const tbody = $("#audit tbody"); tbody.replaceChildren();
  for (const e of body.entries) {
    tbody.append(el("tr", {}, el("td", {}, formatDateTime(e.at)), el("td", {}, e.user || ""), el("td", {}, e.role || ""),
      el("td", {}, e.action), el("td", {}, e.study_uid || ""), el("td", {}, e.client || "")));
  }
}

// Monitoring is fetched on demand (Refresh, or a changed filter), not polled: the tables cover every
// signed read and are heavier than a worklist page.
const pct = (v) => v === null || v === undefined ? "—" : (v * 100).toFixed(0) + "%";
const num = (v, digits = 2) => v === null || v === undefined ? "—" : Number(v).toFixed(digits);

export async function refreshMonitoring() {
  if ($("#monitoring-view").hidden) return;
  const params = new URLSearchParams({ freq: $("#m-freq").value });
  if ($("#m-modality").value) params.set("modality", $("#m-modality").value);
  const r = await api("/api/v1/monitoring?" + params);
  if (!r.ok) { $("#m-caption").textContent = t("monitoring.unavailable", { status: r.status }); return; }
  const body = await r.json();
  $("#m-caption").textContent = t("monitoring.summary", { n: body.signed_reads, sites: body.sites ? body.sites.join(", ") : t("monitoring.all_sites"),
    min: body.bands.min_rows, moderate: body.bands.psi_moderate, large: body.bands.psi_large });
  const fill = (selector, rows, cells, rowClass) => {
    const tbody = $(selector + " tbody"); tbody.replaceChildren();
    for (const row of rows) tbody.append(el("tr", { class: rowClass ? rowClass(row) : "" }, ...cells(row).map((c) => el("td", {}, c))));
    if (!rows.length) tbody.append(el("tr", {}, el("td", { colSpan: 10, class: "muted" }, t("monitoring.no_data"))));
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

export function bindAdmin() {
  $("#sub-prev").addEventListener("click", () => { submissionsOffset = Math.max(0, submissionsOffset - SUBMISSIONS_PAGE); refreshSubmissions(); });
  $("#sub-next").addEventListener("click", () => { submissionsOffset += SUBMISSIONS_PAGE; refreshSubmissions(); });
  $("#audit-refresh").addEventListener("click", () => refreshAudit());
  for (const id of ["#m-freq", "#m-modality", "#m-metric"]) $(id).addEventListener("change", () => refreshMonitoring());
  $("#m-refresh").addEventListener("click", () => refreshMonitoring());
  $("#export-btn").addEventListener("click", async () => {
    const r = await api("/api/v1/exports/signed-reads");
    if (!r.ok) { $("#export-msg").textContent = t("export.refused"); return; }
    const body = await r.json();
    const link = el("a", { href: URL.createObjectURL(new Blob([JSON.stringify(body.rows, null, 1)], { type: "application/json" })), download: "signed-reads.json" },
      t("export.rows", { n: body.count }));
    $("#export-msg").replaceChildren(link);
  });
}
