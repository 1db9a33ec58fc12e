// chatspan's admin page: plain JavaScript over the admin API, nothing to build.
// Every value from the API goes into the page as text (textContent), never as HTML.
"use strict";

const API = "/console/api/admin";
const state = { key: sessionStorage.getItem("chatspan-key"), chatCursor: null, chatFilters: {} };

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

async function api(path, params = {}) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v != null));
  const response = await fetch(`${path}?${query}`, { headers: { Authorization: `Bearer ${state.key}` } });
  if (response.status === 401) { signOut("That key was not accepted."); throw new Error("unauthorized"); }
  if (!response.ok) throw new Error(`${response.status} ${await response.text()}`);
  return response.json();
}

function show(view) {
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== view;
  for (const button of document.querySelectorAll("#tabs button[data-view]"))
    button.classList.toggle("active", button.dataset.view === view);
}

function shortTime(iso) { return iso ? iso.replace("T", " ").slice(0, 19) : ""; }
function clip(text, n = 160) { return !text ? "" : text.length > n ? text.slice(0, n - 1) + "…" : text; }
function traceLink(row) {
  return row.trace_url ? el("a", { href: row.trace_url, target: "_blank", rel: "noopener", text: "trace" })
                       : el("span", { title: row.trace_id, text: row.trace_id.slice(0, 8) });
}

// -- sign in ---------------------------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  state.key = document.getElementById("key").value.trim();
  try {
    await api(`${API}/log-stats`, { since: new Date(Date.now() - 3600e3).toISOString() });
  } catch (error) { return; }
  sessionStorage.setItem("chatspan-key", state.key);
  start();
}

function signOut(message) {
  sessionStorage.removeItem("chatspan-key");
  state.key = null;
  document.getElementById("tabs").hidden = true;
  for (const section of document.querySelectorAll(".view")) section.hidden = true;
  document.getElementById("sign-in").hidden = false;
  const error = document.getElementById("sign-in-error");
  error.hidden = !message;
  error.textContent = message || "";
}

function start() {
  document.getElementById("sign-in").hidden = true;
  document.getElementById("tabs").hidden = false;
  show("chats");
  loadChats(true);
}

// -- chats -------------------------------------------------------------------------------

async function loadChats(fresh) {
  if (fresh) { state.chatCursor = null; document.getElementById("chat-rows").replaceChildren(); }
  const params = { ...state.chatFilters, per_page: 50 };
  if (params.since) params.since = `${params.since}T00:00:00Z`;
  if (state.chatCursor) params.cursor = state.chatCursor;
  const page = await api(`${API}/chat-logs`, params);
  const body = document.getElementById("chat-rows");
  for (const row of page.data) {
    body.append(el("tr", { "data-id": row.id },
      el("td", { text: shortTime(row.created_at) }),
      el("td", {}, row.user_id ? el("a", { class: "user", text: row.user_id, onclick: () => openConversation(row.user_id) }) : ""),
      el("td", { text: row.app_id || "" }),
      el("td", { class: `status-${row.status}`, text: row.status }),
      el("td", { class: "text", text: clip(row.input_text) }),
      el("td", { class: "text", text: clip(row.output_text) }),
      el("td", { text: row.latency_ms != null ? `${Math.round(row.latency_ms)} ms` : "" }),
      el("td", {}, traceLink(row))));
  }
  state.chatCursor = page.next_cursor;
  document.getElementById("chat-more").hidden = !page.has_more;
  document.getElementById("chat-summary").textContent =
    `${page.total_capped ? "more than " : ""}${page.total} chat(s)`;
}

async function openConversation(userId) {
  show("conversation");
  document.getElementById("conversation-title").textContent = `Conversations of ${userId}`;
  const page = await api(`${API}/users/${encodeURIComponent(userId)}/chat-history`, { per_page: 100 });
  const byConversation = new Map();
  for (const row of [...page.data].reverse()) {
    const key = row.conversation_id || "(no conversation)";
    if (!byConversation.has(key)) byConversation.set(key, []);
    byConversation.get(key).push(row);
  }
  const turns = document.getElementById("conversation-turns");
  turns.replaceChildren();
  for (const [conversation, rows] of byConversation) {
    turns.append(el("h3", { class: "conversation-id", text: `Conversation ${conversation}` }));
    for (const row of rows) {
      turns.append(el("div", { class: "turn" },
        el("div", { class: "question", text: row.input_text || "(question not captured)" }),
        el("div", { class: "answer", text: row.output_text || "" }),
        el("div", { class: `meta status-${row.status}`,
          text: `${shortTime(row.created_at)} · ${row.status} · ${Math.round(row.latency_ms || 0)} ms` },
          " · ", traceLink(row))));
    }
  }
}

// -- errors ------------------------------------------------------------------------------

async function loadErrors(params = {}) {
  const page = await api(`${API}/error-groups`, { ...params, per_page: 50 });
  const list = document.getElementById("error-groups");
  list.replaceChildren();
  for (const group of page.data) {
    list.append(el("details", { class: "group", "data-fingerprint": group.fingerprint || "" },
      el("summary", { text: `${group.type_error} — ${group.count} time(s), ${group.users_affected} user(s), last ${shortTime(group.last_seen)}` }),
      el("p", { text: group.sample_message || "" }),
      el("pre", { class: "stack", text: group.sample_stacktrace || "(no stack trace)" }),
      group.sample_trace_url ? el("a", { href: group.sample_trace_url, target: "_blank", rel: "noopener", text: "sample trace" }) : ""));
  }
}

// -- statistics ----------------------------------------------------------------------------

async function loadStats() {
  const stats = await api(`${API}/log-stats`);
  const card = (label, value) => el("div", { class: "card" }, el("b", { text: String(value) }), label);
  document.getElementById("totals").replaceChildren(
    card("chats", stats.totals.chats), card("errors", stats.totals.errors),
    card("users", stats.totals.users), card("conversations", stats.totals.conversations),
    card("error rate", `${(stats.error_rate * 100).toFixed(1)} %`), card("tokens", stats.tokens.total));
  const latency = stats.latency_ms;
  const ms = (value) => value == null ? "–" : `${Math.round(value)} ms`;
  document.getElementById("latency").replaceChildren(
    card("p50", ms(latency.p50)), card("p95", ms(latency.p95)), card("p99", ms(latency.p99)));
  document.getElementById("bucket").textContent = stats.bucket;
  drawSeries(stats.series);
  document.getElementById("errors-by-type").replaceChildren(
    ...stats.errors_by_type.map((t) => el("li", { text: `${t.type_error}: ${t.count}` })));
}

function drawSeries(series) {
  const svg = document.getElementById("series-chart");
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  const width = svg.clientWidth || 800, height = 200, n = Math.max(series.length, 1);
  const top = Math.max(1, ...series.map((b) => Math.max(b.chats, b.errors)));
  const slot = width / n;
  series.forEach((bucket, i) => {
    for (const [kind, offset] of [["chats", 0.1], ["errors", 0.5]]) {
      const h = (bucket[kind] / top) * (height - 10);
      const rect = document.createElementNS(ns, "rect");
      rect.setAttribute("x", String(i * slot + slot * offset));
      rect.setAttribute("y", String(height - h));
      rect.setAttribute("width", String(slot * 0.38));
      rect.setAttribute("height", String(h));
      rect.setAttribute("class", `legend-${kind}`);
      const title = document.createElementNS(ns, "title");
      title.textContent = `${shortTime(bucket.start)}: ${bucket[kind]} ${kind}`;
      rect.append(title);
      svg.append(rect);
    }
  });
}

// -- wiring --------------------------------------------------------------------------------

function formValues(form) { return Object.fromEntries(new FormData(form).entries()); }

document.getElementById("sign-in-form").addEventListener("submit", signIn);
document.getElementById("sign-out").addEventListener("click", () => signOut());
document.getElementById("chat-filters").addEventListener("submit", (event) => {
  event.preventDefault();
  state.chatFilters = formValues(event.target);
  loadChats(true);
});
document.getElementById("chat-more").addEventListener("click", () => loadChats(false));
document.getElementById("back-to-chats").addEventListener("click", () => show("chats"));
document.getElementById("error-filters").addEventListener("submit", (event) => {
  event.preventDefault();
  loadErrors(formValues(event.target));
});
for (const button of document.querySelectorAll("#tabs button[data-view]")) {
  button.addEventListener("click", () => {
    show(button.dataset.view);
    if (button.dataset.view === "errors") loadErrors(formValues(document.getElementById("error-filters")));
    if (button.dataset.view === "stats") loadStats();
  });
}
if (state.key) start(); else signOut();
