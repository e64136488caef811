// Shared plumbing of the page: the session, authenticated fetches, DOM helpers, views.
"use strict";

import { t } from "/static/i18n.js";

export const $ = (sel) => document.querySelector(sel);
export const state = { token: sessionStorage.getItem("preread.token"), me: null, timer: null, clock: null, study: null,
                       items: [], total: 0, selected: -1, sites: new Set(), onLogout: null };

export const UNAUTHORISED = "unauthorised";

export async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  const sentWith = state.token;
  if (sentWith) headers["Authorization"] = "Bearer " + sentWith;
  if (options.json !== undefined) { headers["Content-Type"] = "application/json"; options.body = JSON.stringify(options.json); }
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401 && path !== "/api/v1/login") {
    // Only the current session ends here: a request still in flight from before a logout (or from the
    // previous user) must not sign out whoever is signed in now.
    if (sentWith === state.token && state.onLogout) state.onLogout(t("app.session_ended"));
    throw new Error(UNAUTHORISED);
  }
  return response;
}

export function text(value) { return value === null || value === undefined ? "" : String(value); }

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k.startsWith("data-")) node.setAttribute(k, v); else node[k] = v;
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(text(child)));
  return node;
}

const VIEWS = ["login-view", "worklist-view", "study-view", "submissions-view", "monitoring-view", "export-view", "audit-view"];
export function showMany(ids) { for (const s of VIEWS) $("#" + s).hidden = !ids.includes(s); }

export function waiting(arrived) {
  const minutes = Math.max(0, (Date.now() - new Date(arrived).getTime()) / 60000);
  const h = Math.floor(minutes / 60), m = Math.floor(minutes % 60), s = Math.floor((minutes * 60) % 60);
  if (h) return t("time.h", { n: h }) + " " + t("time.min", { n: String(m).padStart(2, "0") });  // seconds matter only in the first hour
  return t("time.min", { n: m }) + " " + t("time.s", { n: String(s).padStart(2, "0") });
}

export async function detail(response) {
  try { const body = await response.json(); return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail); }
  catch (e) { return String(response.status); }
}

export async function fetchImage(path, onResponse) {
  const r = await api(path);
  if (!r.ok) return null;
  if (onResponse) onResponse(r);
  return URL.createObjectURL(await r.blob());
}

export function setSrc(img, url) {  // one object URL per picture: free the one it replaces
  if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
  img.src = url;
}

// Where the page is: #/worklist?filters… or #/study/<uid>. The hash is the state, so a link or a reload
// lands on the same study or the same filtered page.
export function route() {
  const hash = decodeURIComponent(location.hash.replace(/^#/, "")) || "/worklist";
  const [path, query] = hash.split("?");
  const parts = path.split("/").filter(Boolean);
  return { view: parts[0] || "worklist", uid: parts.slice(1).join("/") || null, params: new URLSearchParams(query || "") };
}
export function go(hash) { if (location.hash !== hash) location.hash = hash; }
export function studyLink(uid) { return "#/study/" + encodeURIComponent(uid); }
