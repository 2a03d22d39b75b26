// layoutsync dashboard: read-only. Polls /v1/sessions with the bearer token and shows each
// session's live preview. The token lives in sessionStorage only (never a cookie); a token in
// the URL fragment (#token=...) is taken and removed from the address bar at once.
"use strict";

const TOKEN_KEY = "layoutsync.apiToken";
const POLL_MS = 1000;
const MAX_CARDS = 200; // a page of thousands of live previews helps nobody
const previews = new Map(); // session name -> {signature, url}
let timer = null;

function $(id) { return document.getElementById(id); }

function takeFragmentToken() {
  const hash = window.location.hash;
  if (hash.startsWith("#token=")) {
    const value = decodeURIComponent(hash.slice("#token=".length));
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    history.replaceState(null, "", window.location.pathname + window.location.search);
  }
}

function token() { return sessionStorage.getItem(TOKEN_KEY); }

function showLogin(message) {
  if (timer) { clearTimeout(timer); timer = null; }
  $("login").hidden = false;
  $("signout").hidden = true;
  $("login-error").textContent = message || "";
  $("summary").textContent = "not signed in";
  $("updated").textContent = "";
  $("sessions").replaceChildren();
  for (const entry of previews.values()) URL.revokeObjectURL(entry.url || "");
  previews.clear();
  $("token").focus();
}

async function api(path) {
  const response = await fetch(path, {
    headers: { Authorization: "Bearer " + token() },
    cache: "no-store",
  });
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    throw new Unauthorized();
  }
  return response;
}

class Unauthorized extends Error {}

function text(value) {
  if (value === null || value === undefined || value === "") return "-";
  return String(value);
}

function uids(list) { return list && list.length ? list.join(", ") : "none"; }

function pendingText(session) {
  const pending = session.pending || {};
  const parts = [];
  if (pending.changes) parts.push("changes not yet applied");
  if (pending.queued) parts.push("queued");
  if (pending.running) parts.push("reconciling");
  if (pending.failures) parts.push(pending.failures + " failure(s), backing off");
  if (pending.refreshDue) parts.push("refresh due");
  return parts.length ? parts.join(", ") : "none";
}

function field(list, label, value, cls) {
  const dt = document.createElement("dt");
  dt.textContent = label;
  const dd = document.createElement("dd");
  dd.textContent = value;
  dd.dataset.field = label;
  if (cls) dd.className = cls;
  list.append(dt, dd);
}

function card(name) {
  let node = document.querySelector(`.session[data-session="${CSS.escape(name)}"]`);
  if (node) return node;
  node = document.createElement("article");
  node.className = "session";
  node.dataset.session = name;
  const head = document.createElement("div");
  head.className = "head";
  const dot = document.createElement("span");
  dot.className = "dot";
  const title = document.createElement("span");
  title.className = "name";
  title.textContent = name;
  const instance = document.createElement("span");
  instance.className = "instance";
  const pill = document.createElement("span");
  pill.className = "pill";
  head.append(dot, title, instance, pill);
  const preview = document.createElement("div");
  preview.className = "preview";
  const img = document.createElement("img");
  img.alt = "live layout of " + name;
  preview.append(img);
  const list = document.createElement("dl");
  node.append(head, preview, list);
  $("sessions").append(node);
  return node;
}

function render(data) {
  const all = data.sessions || [];
  const sessions = all.slice(0, MAX_CARDS);
  const seen = new Set();
  for (const session of sessions) {
    seen.add(session.name);
    const node = card(session.name);
    const error = session.lastError || session.configError;
    const pending = pendingText(session) !== "none";
    node.querySelector(".dot").className = "dot" + (error ? " error" : pending ? " pending" : "");
    node.querySelector(".instance").textContent = session.instanceId;
    node.querySelector(".pill").textContent = session.lastAction ? "last: " + session.lastAction : "no reconcile yet";
    const list = node.querySelector("dl");
    list.replaceChildren();
    field(list, "instanceId", text(session.instanceId));
    field(list, "taskId", text(session.taskId));
    field(list, "sequenceId", text(session.sequenceId));
    field(list, "hosts", `${session.visible.length} visible / ${session.overflowed.length} overflowed`);
    field(list, "visible", uids(session.visible));
    if (session.overflowed.length) field(list, "overflowed", uids(session.overflowed));
    field(list, "speaker", text(session.speaker));
    field(list, "last action", text(session.lastAction));
    field(list, "last error", text(error), error ? "error" : "");
    field(list, "pending", pendingText(session));
    refreshPreview(session, node.querySelector("img"));
  }
  for (const node of document.querySelectorAll(".session")) {
    if (!seen.has(node.dataset.session)) {
      const entry = previews.get(node.dataset.session);
      if (entry && entry.url) URL.revokeObjectURL(entry.url);
      previews.delete(node.dataset.session);
      node.remove();
    }
  }
  const errors = Object.entries(data.configErrors || {});
  const box = $("config-errors");
  box.hidden = errors.length === 0;
  box.replaceChildren(...errors.map(([name, message]) => {
    const p = document.createElement("p");
    p.className = "error banner";
    p.textContent = `${name}: ${message}`;
    return p;
  }));
  const total = data.total ?? all.length;
  const count = `${total} session${total === 1 ? "" : "s"}`;
  $("summary").textContent = total > sessions.length
    ? `${count} (the first ${sessions.length} shown)` : count;
  $("updated").textContent = "updated " + new Date().toLocaleTimeString();
}

async function refreshPreview(session, img) {
  const signature = JSON.stringify([session.taskId, session.sequenceId, session.visible,
    session.overflowed, session.speaker, session.lastAction]);
  const entry = previews.get(session.name) || {};
  if (entry.signature === signature) return;
  entry.signature = signature;
  previews.set(session.name, entry);
  try {
    const response = await api(`/v1/sessions/${encodeURIComponent(session.name)}/preview.svg?live=1`);
    if (!response.ok) throw new Error(`preview: HTTP ${response.status}`);
    const url = URL.createObjectURL(await response.blob());
    if (entry.url) URL.revokeObjectURL(entry.url);
    entry.url = url;
    img.src = url;
    img.dataset.signature = signature;
  } catch (error) {
    entry.signature = null; // try again on the next poll
    if (error instanceof Unauthorized) showLogin("The token was rejected.");
  }
}

async function poll() {
  timer = null;
  try {
    const response = await api(`/v1/sessions?limit=${MAX_CARDS}`);
    if (!response.ok) throw new Error(`GET /v1/sessions: HTTP ${response.status}`);
    render(await response.json());
    $("problem").hidden = true;
  } catch (error) {
    if (error instanceof Unauthorized) { showLogin("The token was rejected."); return; }
    $("problem").hidden = false;
    $("problem").textContent = "Cannot reach the daemon: " + error.message + " (retrying)";
  }
  timer = setTimeout(poll, POLL_MS);
}

function start() {
  $("login").hidden = true;
  $("signout").hidden = false;
  if (!timer) poll();
}

document.addEventListener("DOMContentLoaded", () => {
  takeFragmentToken();
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token").value.trim();
    $("token").value = "";
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    start();
  });
  $("signout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin("");
  });
  window.addEventListener("hashchange", () => {
    takeFragmentToken();
    if (token()) start();
  });
  if (token()) start(); else showLogin("");
});
