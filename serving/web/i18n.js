// The page's words: the service's message catalog for the chosen locale (GET /api/v1/i18n), never
// strings in code. The deployment names the default locale (zh-CN in the demo); a user may switch,
// and the choice is kept in this browser.
"use strict";

const STORE_KEY = "preread.locale";
const state = { locale: null, defaultLocale: null, locales: [], catalog: {} };

export async function loadCatalog(wanted) {
  const chosen = wanted || localStorage.getItem(STORE_KEY) || "";
  const response = await fetch("/api/v1/i18n" + (chosen ? "?locale=" + encodeURIComponent(chosen) : ""));
  if (!response.ok) throw new Error("catalog " + response.status);
  const body = await response.json();
  Object.assign(state, { locale: body.locale, defaultLocale: body.default_locale, locales: body.locales, catalog: body.catalog });
  document.documentElement.lang = body.locale;
  if (wanted) localStorage.setItem(STORE_KEY, body.locale);
  applyTo(document);
  return state;
}

export function currentLocale() { return state.locale; }
export function availableLocales() { return state.locales; }

function fill(text, params) {
  return text.replace(/\{(\w+)\}/g, (whole, name) => (params && params[name] !== undefined && params[name] !== null ? String(params[name]) : whole));
}

// A catalog text by context and key; a missing key shows the fallback (a code's English name) or the key.
export function term(context, key, fallback, params) {
  const text = ((state.catalog[context] || {})[key]) || fallback || key;
  return fill(text, params);
}

export function t(key, params) { return term("ui", key, key, params); }
export const levelName = (level) => term("level", level, level);
export const findingName = (modality, code, fallback) => term("finding." + (modality === "ECG" ? "ECG" : "CXR"), code, fallback);
export const statementName = (code, fallback) => term("statement", code, fallback);
export const measurementName = (key) => term("measurement", key, key.replaceAll("_", " "));
export const measurementUnit = (key) => term("unit", key, "");
export const statusName = (status) => term("ui", "status." + status, status.replaceAll("_", " "));

const LEAD_SEP = () => (state.locale === "zh-CN" ? "、" : ", ");
export function qualityText(issue) {
  const leads = (issue.leads || []).join(LEAD_SEP());
  return term("quality", issue.code, issue.text, { leads });
}

// Static text of the page: data-i18n (text), data-i18n-title, data-i18n-placeholder, data-i18n-aria.
export function applyTo(root) {
  for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of root.querySelectorAll("[data-i18n-title]")) node.title = t(node.dataset.i18nTitle);
  for (const node of root.querySelectorAll("[data-i18n-aria]")) node.setAttribute("aria-label", t(node.dataset.i18nAria));
  for (const node of root.querySelectorAll("[data-level-option]")) node.textContent = levelName(node.dataset.levelOption);
  document.title = t("app.title");
}

export function formatDateTime(iso) {
  return iso ? new Date(iso).toLocaleString(state.locale || undefined, { hour12: false }) : "";
}
export function formatTime(iso) {
  return iso ? new Date(iso).toLocaleTimeString(state.locale || undefined, { hour12: false }) : "";
}
