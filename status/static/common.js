// What every page of the status service shares: element helpers and the one way to call
// its API. A service with a token answers 401 until the page sends it: the page's token
// box asks once and the token is kept for this browser tab (sessionStorage). POSTs carry
// the session's CSRF token (GET /api/session), fetched once and again after a 403.
"use strict";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "prophoto-ingest-status-token";

class NeedsToken extends Error {}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

let csrfToken = null;

// GET path, or POST body as JSON: {status, ok, data}; NeedsToken when the token is missing.
async function api(path, body) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const opts = { cache: "no-store", headers, credentials: "same-origin" };
  if (body !== undefined) {
    if (!csrfToken) await session();
    opts.method = "POST";
    headers["Content-Type"] = "application/json";
    headers["X-CSRF-Token"] = csrfToken || "";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  if (r.status === 401) {
    if (token) sessionStorage.removeItem(TOKEN_KEY);
    $("token-box").hidden = false;
    $("token-error").textContent = token ? "that token was refused" : "";
    throw new NeedsToken("this status service needs its token");
  }
  $("token-box").hidden = true;
  if (r.status === 403) csrfToken = null;  // a new session next time
  let data = null;
  try { data = await r.json(); } catch (_) { data = { error: `HTTP ${r.status}` }; }
  return { status: r.status, ok: r.ok, data };
}

// A CSRF token for this browser session; returns who the service says acts (or null).
async function session() {
  const r = await api("/api/session");
  if (!r.ok) return null;
  csrfToken = r.data.csrf;
  return r.data.by;
}

// The token box: keep the token for this tab, then run onToken.
function onTokenForm(onToken) {
  $("token-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
    $("token-input").value = "";
    csrfToken = null;
    await onToken();
  });
}
