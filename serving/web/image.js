// The chest film: window/level (rendered by the service in the image's own units), zoom (wheel or
// buttons) and pan (drag), the AI heatmap in the same transformed box as the film so it stays aligned,
// and the prior film beside it with the same window/level, zoom and pan.
"use strict";

import { $, fetchImage, setSrc, state } from "/static/core.js";
import { t } from "/static/i18n.js";

const view = { zoom: 1, x: 0, y: 0, request: 0, priorUid: null };

function applyTransform() {
  for (const stack of document.querySelectorAll(".image-stack")) {
    stack.style.transform = `translate(${view.x}px, ${view.y}px) scale(${view.zoom})`;
  }
  $("#zoom-caption").textContent = t("image.zoom", { zoom: view.zoom.toFixed(1) });
}

export function resetView() { view.zoom = 1; view.x = 0; view.y = 0; applyTransform(); }

// Zoom about a point of the frame (the pointer for the wheel, the centre for the buttons): the film
// under it stays put, in both frames.
function zoomBy(factor, at) {
  const clip = $("#current-frame .image-clip");
  const px = at ? at.x : clip.clientWidth / 2, py = at ? at.y : clip.clientHeight / 2;
  const zoom = Math.min(8, Math.max(1, view.zoom * factor));
  view.x = px - (px - view.x) * (zoom / view.zoom);
  view.y = py - (py - view.y) * (zoom / view.zoom);
  view.zoom = zoom;
  if (zoom === 1) { view.x = 0; view.y = 0; }
  applyTransform();
}

export function bindImageControls() {
  for (const frame of document.querySelectorAll(".image-clip")) {
    frame.addEventListener("wheel", (event) => {
      event.preventDefault();
      const box = frame.getBoundingClientRect();
      zoomBy(event.deltaY < 0 ? 1.25 : 0.8, { x: event.clientX - box.left, y: event.clientY - box.top });
    }, { passive: false });
    let drag = null;
    frame.addEventListener("pointerdown", (event) => { drag = { x: event.clientX - view.x, y: event.clientY - view.y }; frame.setPointerCapture(event.pointerId); });
    frame.addEventListener("pointermove", (event) => { if (drag) { view.x = event.clientX - drag.x; view.y = event.clientY - drag.y; applyTransform(); } });
    frame.addEventListener("pointerup", () => { drag = null; });
  }
  $("#img-zoom-in").addEventListener("click", () => zoomBy(1.25));
  $("#img-zoom-out").addEventListener("click", () => zoomBy(0.8));
  $("#heatmap-toggle").addEventListener("change", () => { $("#heatmap-image").hidden = !$("#heatmap-toggle").checked; });
  for (const id of ["#ww", "#wl"]) $(id).addEventListener("change", () => state.study && loadImages(state.study.study_uid, view.priorUid, true));
  $("#wl-reset").addEventListener("click", () => { resetView(); if (state.study) loadImages(state.study.study_uid, view.priorUid, false); });
}

function startSliders(r) {
  // start the sliders at the image's own window (its units: 8-bit, 12-bit, HU ...), not a fixed 4096
  const ww = parseFloat(r.headers.get("X-Window-Width")), wc = parseFloat(r.headers.get("X-Window-Center"));
  if (!(ww > 0) || !Number.isFinite(wc)) return;
  const span = Math.max(ww, 2);
  $("#ww").max = String(Math.ceil(span * 2)); $("#ww").value = String(Math.round(ww));
  $("#wl").min = String(Math.floor(wc - span)); $("#wl").max = String(Math.ceil(wc + span)); $("#wl").value = String(Math.round(wc));
}

// The current film (and its heatmap) and, when there is one, the prior film with the same window.
export async function loadImages(uid, priorUid, windowed) {
  const request = ++view.request;  // a slower earlier answer must not replace a later one
  view.priorUid = priorUid;
  if (!windowed) resetView();
  const query = windowed ? `?window=${$("#ww").value}&level=${$("#wl").value}` : "";
  const base = (u) => `/api/v1/studies/${encodeURIComponent(u)}`;
  const url = await fetchImage(base(uid) + "/image.png" + query, (r) => { if (!windowed && request === view.request) startSliders(r); });
  if (request !== view.request) { if (url) URL.revokeObjectURL(url); return; }
  $("#image-missing").hidden = !!url;
  $("#study-image").hidden = !url;
  if (url) setSrc($("#study-image"), url); else $("#image-missing").textContent = t("image.missing");
  $("#prior-frame").hidden = !priorUid;
  if (priorUid) {
    // the prior gets the current film's window: the same grey levels side by side
    const priorQuery = `?window=${$("#ww").value}&level=${$("#wl").value}`;
    const prior = await fetchImage(base(priorUid) + "/image.png" + priorQuery);
    if (request !== view.request) { if (prior) URL.revokeObjectURL(prior); return; }
    if (prior) setSrc($("#prior-image"), prior);
  }
  if (!windowed) {
    const heat = await fetchImage(base(uid) + "/heatmap.png");
    if (request !== view.request) { if (heat) URL.revokeObjectURL(heat); return; }
    $("#heatmap-toggle").disabled = !heat;
    if (heat) setSrc($("#heatmap-image"), heat);
    $("#heatmap-image").hidden = !heat || !$("#heatmap-toggle").checked;
  }
  $("#study-image").dataset.loaded = "true";
}
