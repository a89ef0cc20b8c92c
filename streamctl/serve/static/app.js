// The monitor page: rows from the server's event stream (/api/events), counted on between updates.
// No framework, no build step; every figure is put in with textContent (a stream's last error is text).
"use strict";

const WARN_BELOW = 300; // seconds: the under-5-minutes warning, as `status` gives it
const STALE_AFTER = 12000; // ms without a message (rows come every 5 s) before the page says it is lost
const RUNNING = new Set(["starting", "live", "backoff", "stopping"]);
let rows = new Map(); // name -> {row, got: performance.now() when it came}
let source = null;
let lastMessage = 0;
const pending = new Set(); // names with an action under way: their buttons stay off until it is answered
const SECONDS_KEYS = new Set(["delay", "remaining", "streamed", "budget", "runtime", "was"]); // journal figures

const $ = (id) => document.getElementById(id);

function duration(s) {
  if (s === null || s === undefined) return "-";
  if (s < 0) return "-" + duration(-s);
  if (s < 60) return s.toFixed(1) + "s";
  const whole = Math.round(s), h = Math.floor(whole / 3600), m = Math.floor((whole % 3600) / 60), sec = whole % 60;
  const pad = (n) => String(n).padStart(2, "0");
  return h ? `${h}h${pad(m)}m${pad(sec)}s` : `${m}m${pad(sec)}s`;
}

// A live stream's figures move on at real time between updates (the server's next row corrects them).
function figures(entry) {
  const r = entry.row;
  const moving = r.status === "live" ? (performance.now() - entry.got) / 1000 : 0;
  const runtime = r.runtime_seconds + moving;
  let remaining = r.remaining_seconds;
  if (remaining !== null) remaining = Math.max(0, remaining - moving);
  return { runtime, remaining };
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") e.textContent = v;
    else if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function card(name) {
  const fig = (key, label) => [el("dt", { text: label }), el("dd", { "data-field": key })];
  const c = el("article", { class: "card", "data-name": name },
    el("h2", {}, el("span", { text: name }), el("span", { class: "badge", "data-field": "status" })),
    el("dl", { class: "figures" },
      ...fig("runtime", "runtime"), ...fig("remaining", "remaining"), ...fig("budget", "budget"),
      ...fig("restarts", "restarts"), ...fig("stop_reason", "last stop"), ...fig("next_show", "next show")),
    el("div", { class: "bar", role: "progressbar", "aria-label": "budget used", "aria-valuemin": "0",
      "aria-valuemax": "100" }, el("div", {})),
    el("p", { class: "warning", "data-field": "warning", hidden: "", text: "Under 5 minutes left" }),
    el("p", { class: "error", "data-field": "last_error" }),
    el("div", { class: "actions" },
      el("button", { type: "button", "data-action": "stop", class: "danger", text: "Stop" }),
      el("button", { type: "button", "data-action": "start", text: "Start" }),
      el("button", { type: "button", "data-action": "reset-runtime", text: "Reset timer" })),
    el("p", { class: "said", "data-field": "said", "aria-live": "polite" }));
  c.querySelectorAll("button[data-action]").forEach((b) => b.addEventListener("click", () => act(name, b.dataset.action)));
  return c;
}

function paint() {
  const box = $("streams");
  for (const [name, entry] of rows) {
    let c = box.querySelector(`[data-name="${CSS.escape(name)}"]`);
    if (!c) { c = card(name); box.append(c); }
    const r = entry.row, f = figures(entry), set = (k, v) => { c.querySelector(`[data-field="${k}"]`).textContent = v; };
    c.dataset.status = r.status;
    set("status", r.status);
    set("runtime", duration(f.runtime));
    set("remaining", duration(f.remaining));
    set("budget", r.budget_seconds !== null ? duration(r.budget_seconds) : (r.until ? "until " + r.until : "-"));
    set("restarts", String(r.restarts));
    set("stop_reason", r.stop_reason || "-");
    set("next_show", r.next_show_local ? `${r.next_show_local}${r.schedule_paused ? " (paused)" : ""}` : "-");
    set("last_error", r.last_error ? "last error: " + r.last_error : "");
    const used = r.budget_seconds ? Math.min(100, (100 * f.runtime) / r.budget_seconds) : 0;
    const bar = c.querySelector(".bar");
    bar.firstChild.style.width = used.toFixed(1) + "%";
    bar.setAttribute("aria-valuenow", used.toFixed(0));
    const running = RUNNING.has(r.status) || r.orphan;
    c.querySelector('[data-field="warning"]').hidden = !(running && f.remaining !== null && f.remaining < WARN_BELOW);
    c.querySelector('[data-action="stop"]').disabled = !running;
    c.querySelector('[data-action="start"]').disabled = running;
    c.querySelector('[data-action="reset-runtime"]').disabled = running || r.runtime_seconds === 0;
    if (pending.has(name)) c.querySelectorAll("button").forEach((b) => { b.disabled = true; });
  }
  for (const c of box.querySelectorAll(".card")) if (!rows.has(c.dataset.name)) c.remove();
  $("empty").hidden = rows.size > 0;
}

function take(list) {
  const got = performance.now();
  rows = new Map(list.map((r) => [r.name, { row: r, got }]));
  paint();
}

const CONFIRM = {
  stop: (n) => `Stop ${n}? It goes off the air now; its runtime so far is kept.`,
  start: (n) => `Start ${n}? It streams what is left of its budget.`,
  "reset-runtime": (n) => `Reset the timer of ${n} to zero? It can then stream its whole budget again.`,
};

async function act(name, action) {
  if (!window.confirm(CONFIRM[action](name))) return;
  const c = $("streams").querySelector(`[data-name="${CSS.escape(name)}"]`);
  const said = c.querySelector('[data-field="said"]');
  said.textContent = action + "…";
  pending.add(name);
  c.querySelectorAll("button").forEach((b) => { b.disabled = true; });
  try {
    const resp = await fetch(`/api/streams/${encodeURIComponent(name)}/${action}`, {
      method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" }, body: "{}",
    });
    const body = await resp.json().catch(() => ({}));
    if (resp.status === 401) return needLogin();
    said.textContent = resp.ok ? done(action, body) : "refused: " + (body.error || resp.status);
  } catch (e) {
    said.textContent = "no answer from the server";
  } finally {
    pending.delete(name);
  }
  refresh();
}

function done(action, body) {
  if (action === "reset-runtime") return `timer reset (was ${duration(body.was_seconds)})`;
  if (action === "start") return body.first_error ? `started; the first try failed: ${body.first_error}` : "started";
  return body.result || "done";
}

async function refresh() {
  const resp = await fetch("/api/streams", { credentials: "same-origin" }).catch(() => null);
  if (resp && resp.status === 401) return needLogin();
  if (resp && resp.ok) take(await resp.json());
}

function needLogin() {
  if (source) { source.close(); source = null; }
  $("login").hidden = false;
  $("logout").hidden = true;
  $("lost").hidden = true;
  $("journal").hidden = true;
  rows = new Map();
  paint();
  $("empty").hidden = true;
  conn("", "logged out");
  $("token").focus();
}

function conn(state, text) {
  const c = $("conn");
  c.className = "conn " + state;
  c.textContent = text;
}

function lost() {
  $("lost").hidden = false;
  conn("lost", "connection lost");
}

function journal(rec) {
  $("journal").hidden = false;
  const list = $("events");
  const what = Object.entries(rec).filter(([k, v]) => !["t", "time", "stream", "event"].includes(k) && v !== null)
    .map(([k, v]) => `${k}=${typeof v === "number" && SECONDS_KEYS.has(k) ? duration(v) : v}`).join(" ");
  list.prepend(el("li", { text: `${(rec.time || "").slice(11, 19)}  ${rec.stream}  ${rec.event}  ${what}` }));
  while (list.children.length > 30) list.lastChild.remove();
}

function connect() {
  if (source) source.close();
  source = new EventSource("/api/events");
  source.addEventListener("open", () => { lastMessage = performance.now(); });
  source.addEventListener("streams", (e) => {
    lastMessage = performance.now();
    $("lost").hidden = true;
    conn("ok", "connected");
    take(JSON.parse(e.data).streams);
  });
  source.addEventListener("event", (e) => { lastMessage = performance.now(); journal(JSON.parse(e.data)); });
  source.addEventListener("error", async () => {
    lost();
    if (source && source.readyState === EventSource.CLOSED) { // refused (401) or gone: look, then again
      source = null;
      const resp = await fetch("/api/streams", { credentials: "same-origin" }).catch(() => null);
      if (resp && resp.status === 401) return needLogin();
      setTimeout(connect, 2000);
    }
  });
}

async function login(ev) {
  ev.preventDefault();
  const resp = await fetch("/api/login", {
    method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token: $("token").value.trim() }),
  }).catch(() => null);
  const body = resp ? await resp.json().catch(() => ({})) : {};
  if (!resp || !resp.ok) {
    $("login-error").textContent = resp ? body.error || String(resp.status) : "no answer from the server";
    return;
  }
  $("token").value = "";
  $("login-error").textContent = "";
  start();
}

async function start() {
  const resp = await fetch("/api/streams", { credentials: "same-origin" }).catch(() => null);
  if (!resp) { lost(); setTimeout(start, 2000); return; }
  if (resp.status === 401) return needLogin();
  $("login").hidden = true;
  $("logout").hidden = false;
  if (resp.ok) take(await resp.json());
  connect();
}

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", login);
  $("logout").addEventListener("click", async () => {
    await fetch("/api/logout", { method: "POST", credentials: "same-origin" }).catch(() => null);
    needLogin();
  });
  setInterval(() => {
    if (source && lastMessage && performance.now() - lastMessage > STALE_AFTER) lost();
    if (rows.size) paint();
  }, 1000);
  start();
});
