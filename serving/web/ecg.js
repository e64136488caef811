// The ECG as a reader expects it: 3×4 leads of 2.5 s + a 10 s lead II rhythm strip, at true 25 mm/s and
// 10 mm/mV on a 1 mm / 5 mm grid, each row led by a 1 mV calibration pulse. The screen scale is stated
// (CSS defines 1 mm as 96/25.4 px: true size on a 96 dpi screen) and fixed: the canvas does not shrink
// with the window (it scrolls), and zoom changes it in steps that the caption reports.
"use strict";

import { api } from "/static/core.js";
import { t } from "/static/i18n.js";

const LAYOUT = [["I", "aVR", "V1", "V4"], ["II", "aVL", "V2", "V5"], ["III", "aVF", "V3", "V6"]];
export const CSS_PX_PER_MM = 96 / 25.4;
export const ZOOMS = [0.5, 0.6, 0.75, 1, 1.5, 2, 3];
const PULSE_MM = 5, WIDTH_MM = 250, ROW_MM = 37.5, MARGIN_MM = 4;
const TOTAL_WIDTH_MM = WIDTH_MM + PULSE_MM + 2 * MARGIN_MM;

// The largest zoom step at which the whole 10 s fits ``widthPx`` (the view opens there; the caption
// states the resulting scale, and "true size" sets 1).
export function fitZoom(widthPx) {
  const fitting = ZOOMS.filter((z) => TOTAL_WIDTH_MM * CSS_PX_PER_MM * z <= widthPx);
  return fitting.length ? fitting[fitting.length - 1] : ZOOMS[0];
}

export async function fetchEcg(uid) {
  const response = await api(`/api/v1/studies/${encodeURIComponent(uid)}/ecg`);
  if (!response.ok) return { error: response.status };
  return response.json();
}

function line(ctx, x1, y1, x2, y2, color, width) {
  ctx.beginPath(); ctx.moveTo(x1, y1); ctx.lineTo(x2, y2); ctx.strokeStyle = color; ctx.lineWidth = width; ctx.stroke();
}

// Draw ``ecg`` ({sampling_rate, leads}) into ``canvas`` at ``zoom`` × true size.
export function drawEcg(canvas, ecg, zoom) {
  const pxPerMm = CSS_PX_PER_MM * zoom;
  const ratio = window.devicePixelRatio || 1;
  const widthMm = TOTAL_WIDTH_MM, heightMm = 4 * ROW_MM + 2 * MARGIN_MM;
  canvas.style.width = `${widthMm * pxPerMm}px`;      // fixed CSS size: the stated scale holds
  canvas.style.height = `${heightMm * pxPerMm}px`;
  canvas.width = Math.round(widthMm * pxPerMm * ratio);
  canvas.height = Math.round(heightMm * pxPerMm * ratio);
  canvas.dataset.pxPerMm = String(pxPerMm);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio * pxPerMm, 0, 0, ratio * pxPerMm, 0, 0);   // drawing units: millimetres
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, widthMm, heightMm);
  ctx.translate(MARGIN_MM, MARGIN_MM);
  const gridW = WIDTH_MM + PULSE_MM, gridH = 4 * ROW_MM;
  for (let mm = 0; mm <= gridW; mm++) line(ctx, mm, 0, mm, gridH, mm % 5 ? "#f6caca" : "#e08a8a", mm % 5 ? 0.06 : 0.16);
  for (let mm = 0; mm <= gridH; mm++) line(ctx, 0, mm, gridW, mm, mm % 5 ? "#f6caca" : "#e08a8a", mm % 5 ? 0.06 : 0.16);
  if (ecg.error) {
    ctx.fillStyle = "#111"; ctx.font = "4px PrereadCJK, sans-serif";
    ctx.fillText(t("ecg.not_available", { status: ecg.error }), 5, 10);
    return;
  }
  const fs = ecg.sampling_rate;
  const trace = (samples, x0, baseline) => {
    ctx.beginPath(); let started = false;
    for (let i = 0; i < samples.length; i++) {
      const v = samples[i];
      if (v === null) { started = false; continue; }
      const x = x0 + (i / fs) * 25, y = baseline - v * 10;
      if (started) ctx.lineTo(x, y); else { ctx.moveTo(x, y); started = true; }
    }
    ctx.strokeStyle = "#111"; ctx.lineWidth = 0.3; ctx.stroke();
  };
  const pulse = (baseline) => {   // 1 mV = 10 mm high, 0.2 s = 5 mm wide
    ctx.beginPath(); ctx.moveTo(0, baseline); ctx.lineTo(1, baseline); ctx.lineTo(1, baseline - 10); ctx.lineTo(4, baseline - 10);
    ctx.lineTo(4, baseline); ctx.lineTo(5, baseline); ctx.strokeStyle = "#111"; ctx.lineWidth = 0.35; ctx.stroke();
  };
  const perColumn = Math.round(2.5 * fs);
  ctx.font = "3.2px PrereadCJK, sans-serif"; ctx.fillStyle = "#111";
  LAYOUT.forEach((row, r) => {
    const baseline = ROW_MM * r + ROW_MM * 0.6;
    pulse(baseline);
    row.forEach((lead, c) => {
      const x0 = PULSE_MM + c * 62.5;
      trace((ecg.leads[lead] || []).slice(c * perColumn, (c + 1) * perColumn), x0, baseline);
      ctx.fillText(lead, x0 + 1.5, baseline - 14);
      if (c) line(ctx, x0, baseline - 3, x0, baseline + 3, "#111", 0.35);
    });
  });
  const rhythm = ROW_MM * 3 + ROW_MM * 0.6;
  pulse(rhythm);
  trace((ecg.leads["II"] || []).slice(0, Math.round(10 * fs)), PULSE_MM, rhythm);
  ctx.fillText(t("ecg.rhythm"), PULSE_MM + 1.5, rhythm - 14);
  ctx.fillText("25 mm/s   10 mm/mV", gridW - 32, gridH + 3.2);
  canvas.dataset.drawn = "true";
}

export function scaleCaption(zoom) {
  return t("ecg.screen_scale", { px: (CSS_PX_PER_MM * zoom).toFixed(2), dpi: 96, zoom });
}
