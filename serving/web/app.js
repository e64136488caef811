// preread reading worklist: plain JavaScript modules, no external libraries (everything ships with the
// service, fonts included). This module signs in, routes (#/worklist?…, #/study/<uid>) and binds keys.
"use strict";

import { bindAdmin, refreshAudit, refreshMonitoring, refreshSubmissions } from "/static/admin.js";
import { $, api, el, go, route, showMany, state, UNAUTHORISED, waiting } from "/static/core.js";
import { availableLocales, currentLocale, loadCatalog, t } from "/static/i18n.js";
import { bindImageControls } from "/static/image.js";
import { claim, openStudy, redrawEcg, release, sign, zoomEcg } from "/static/study.js";
import { bindWorklist, neighbour, refreshWorklist, typing } from "/static/worklist.js";

// A 401 stops whatever the caller was doing; the login view already says why, so the rejection is
// expected and not an error of the page.
window.addEventListener("unhandledrejection", (event) => {
  if (event.reason && event.reason.message === UNAUTHORISED) event.preventDefault();
});

const ADMIN_VIEWS = ["worklist-view", "audit-view", "monitoring-view", "export-view"];

function homeViews() {
  const role = state.me.role;
  if (role === "admin") return ADMIN_VIEWS;
  if (role === "reader") return ["worklist-view"];
  if (role === "grassroots") return ["submissions-view"];
  return ["monitoring-view", "export-view"];
}

async function refreshHome() {
  const role = state.me.role;
  if (role === "grassroots") return refreshSubmissions();
  if (role === "datasci") return refreshMonitoring();
  await refreshWorklist();
  if (role === "admin") { await refreshAudit(); await refreshMonitoring(); }
}

async function show() {
  if (!state.me) return;
  const where = route();
  if (where.view === "study" && where.uid) {
    showMany(["study-view"]);
    await openStudy(where.uid);
  } else {
    state.study = null;
    showMany(homeViews());
    await refreshHome();
  }
}

function poll() {
  clearInterval(state.timer); clearInterval(state.clock);
  const fn = state.me.role === "grassroots" ? refreshSubmissions : refreshWorklist;
  state.timer = setInterval(() => { if (!state.study) fn().catch(() => {}); }, (state.me.poll_seconds || 5) * 1000);
  state.clock = setInterval(() => {
    for (const cell of document.querySelectorAll("[data-arrived]")) cell.firstChild.textContent = waiting(cell.dataset.arrived);
  }, 1000);
}

async function start() {
  const response = await api("/api/v1/me");
  state.me = await response.json();
  $("#who").hidden = false;
  $("#who-name").textContent = t("app.who", { user: state.me.user, role: t("role." + state.me.role), sites: state.me.sites.join(", ") });
  await show();
  poll();
}

function logoutLocal(message) {
  state.token = null; state.me = null;
  sessionStorage.removeItem("preread.token");
  clearInterval(state.timer); clearInterval(state.clock);
  $("#who").hidden = true;
  showMany(["login-view"]);
  $("#login-error").textContent = message || "";
}
state.onLogout = logoutLocal;

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("#login-error").textContent = "";
  const response = await api("/api/v1/login", { method: "POST", json: { username: $("#username").value, password: $("#password").value } });
  if (!response.ok) { $("#login-error").textContent = t("login.failed"); return; }
  const body = await response.json();
  state.token = body.token;
  sessionStorage.setItem("preread.token", body.token);
  $("#password").value = "";
  await start();
});

$("#logout-btn").addEventListener("click", async () => {
  try { await api("/api/v1/logout", { method: "POST" }); } catch (e) { /* already logged out */ }
  // the next user starts at their own home, not at the study the last one had open (a deep link
  // followed while signed out still opens after the login)
  history.replaceState(null, "", location.pathname);
  state.listHash = null;
  logoutLocal("");
});

function backToList() { go(state.listHash || "#/worklist"); }
function step(delta) {
  const next = state.study && neighbour(state.study.study_uid, delta);
  if (next) go("#/study/" + encodeURIComponent(next));
}

window.addEventListener("hashchange", () => {
  if (route().view !== "study") state.listHash = location.hash;
  show();   // a failure surfaces as a page error (a 401's rejection is absorbed above)
});

// Keys in the study view: n/p (or →/←) next/previous study, c claim, s sign, Esc back to the list.
document.addEventListener("keydown", (event) => {
  if ($("#study-view").hidden) return;
  if (event.key === "Enter" && event.ctrlKey && !$("#sign-btn").disabled) { event.preventDefault(); sign(); return; }
  if (typing(event)) return;
  const actions = { Escape: backToList, n: () => step(1), ArrowRight: () => step(1), p: () => step(-1), ArrowLeft: () => step(-1),
                    c: () => !$("#claim-btn").disabled && claim(), s: () => !$("#sign-btn").disabled && sign() };
  if (actions[event.key]) { event.preventDefault(); actions[event.key](); }
});

$("#back-btn").addEventListener("click", backToList);
$("#prev-study").addEventListener("click", () => step(-1));
$("#next-study").addEventListener("click", () => step(1));
$("#claim-btn").addEventListener("click", claim);
$("#release-btn").addEventListener("click", release);
$("#sign-form").addEventListener("submit", (event) => { event.preventDefault(); sign(); });
$("#ecg-zoom-in").addEventListener("click", () => zoomEcg(1));
$("#ecg-zoom-out").addEventListener("click", () => zoomEcg(-1));
$("#ecg-zoom-reset").addEventListener("click", () => zoomEcg(0));
bindWorklist((uid) => go("#/study/" + encodeURIComponent(uid)));
bindImageControls();
bindAdmin();

async function boot() {
  await loadCatalog();
  const select = $("#locale");
  select.replaceChildren(...availableLocales().map((l) => el("option", { value: l.tag }, l.name)));
  select.value = currentLocale();
  select.addEventListener("change", async () => {
    await loadCatalog(select.value);
    if (state.me) { $("#who-name").textContent = t("app.who", { user: state.me.user, role: t("role." + state.me.role), sites: state.me.sites.join(", ") }); await show(); }
    else redrawEcg();
  });
  if (route().view !== "study") state.listHash = location.hash;
  if (state.token) start().catch(() => logoutLocal("")); else showMany(["login-view"]);
}
boot();
