// ringdrop's local page: the daemon's API as JSON through `ringdropctl web`.
// Every piece of data goes into the DOM as text (createElement +
// textContent), never as markup: names come from remote peers.
"use strict";

const PKG = "ringdrop.v1.";
const TOKEN_KEY = "ringdrop-token";
const LIMIT = 500; // rows drawn at first in a big table
const EVENTS_KEEP = 200;
const STATES = ["UNSPECIFIED", "QUEUED", "RUNNING", "PAUSED", "COMPLETED", "FAILED", "CANCELLED", "READY"];

let token = "";
let authFailed = false;
let nodeId = "";
const controllers = new Set(); // AbortControllers of the live streams

// ---------------------------------------------------------------- helpers

const $ = (sel, root = document) => root.querySelector(sel);

/** An element; string children become text nodes, never markup. */
function h(tag, props, ...kids) {
  const e = document.createElement(tag);
  if (props) {
    for (const k in props) {
      const v = props[k];
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "data") for (const d in v) e.dataset[d] = v[d];
      else if (k === "hidden" || k === "disabled" || k === "checked" || k === "value") e[k] = v;
      else e.setAttribute(k, v === true ? "" : String(v));
    }
  }
  for (const c of kids) if (c !== null && c !== undefined && c !== false) e.append(c);
  return e;
}

/** Replaces an element's children, skipping null/false ones. */
const fill = (el, ...kids) => el.replaceChildren(...kids.filter((c) => c !== null && c !== undefined && c !== false));
const num = (x) => Number(x) || 0;
const short = (id, n = 12) => (id ? String(id).slice(0, n) : "?");
const button = (act, label, aria) => h("button", { type: "button", class: act, data: { act }, "aria-label": aria }, label);

function debounce(fn, ms) {
  let t = 0;
  return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
}

const sleep = (ms, signal) => new Promise((resolve) => {
  const done = () => { clearTimeout(t); signal.removeEventListener("abort", done); resolve(); };
  const t = setTimeout(done, ms);
  signal.addEventListener("abort", done);
});

/** Sizes as the CLI prints them: 1024-based, one decimal. */
function fmtBytes(n) {
  n = num(n);
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let v = n, u = 0;
  while (v >= 1024 && u + 1 < units.length) { v /= 1024; u++; }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}
const rateText = (r) => (num(r) === 0 ? "unlimited" : `${fmtBytes(r)}/s`);

const DTF = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const TF = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });
const fmtTime = (t) => (num(t) > 0 ? DTF.format(new Date(num(t) * 1000)) : "-");

function fmtDuration(s) {
  s = num(s);
  const parts = [];
  for (const [u, n] of [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]]) {
    if (s >= n) { parts.push(Math.floor(s / n) + u); s %= n; }
  }
  return parts.slice(0, 2).join(" ") || "0s";
}

/** The enum name of a transfer state (the JSON has names; numbers tolerated). */
function stateEnum(s) {
  if (typeof s === "number") return "TRANSFER_STATE_" + (STATES[s] || "UNSPECIFIED");
  return String(s || "TRANSFER_STATE_UNSPECIFIED");
}
function stateWord(s) {
  const w = stateEnum(s).replace(/^TRANSFER_STATE_/, "").toLowerCase();
  return w === "unspecified" ? "unknown" : w;
}

/** As proto/src/units.rs parse_bytes: 1048576, 512K, 100M, 1.5G (1024-based). */
function parseBytes(s) {
  let t = s.trim();
  if (t.endsWith("/s")) t = t.slice(0, -2);
  if (t.endsWith("iB")) t = t.slice(0, -2);
  else if (t.endsWith("B")) t = t.slice(0, -1);
  let mult = 1;
  const last = t.slice(-1);
  if (/[A-Za-z]/.test(last)) {
    mult = { K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 }[last.toUpperCase()];
    if (!mult) throw new Error(`unknown unit in ${JSON.stringify(s)}: use K, M, G or T`);
    t = t.slice(0, -1);
  }
  t = t.trim();
  if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(t)) {
    throw new Error(`${JSON.stringify(s)} is not a size (examples: 1048576, 512K, 100M, 1.5G)`);
  }
  const n = Number(t);
  if (!(Number.isFinite(n) && n > 0)) throw new Error(`${JSON.stringify(s)} must be a positive size`);
  return Math.floor(n * mult);
}

/** As parse_rate: 0, none or unlimited is no limit (0 on the wire). */
function parseRate(s) {
  return ["0", "none", "unlimited"].includes(s.trim()) ? 0 : parseBytes(s);
}

const DUR = { s: 1, sec: 1, secs: 1, second: 1, seconds: 1, m: 60, min: 60, mins: 60, minute: 60, minutes: 60,
  h: 3600, hr: 3600, hrs: 3600, hour: 3600, hours: 3600, d: 86400, day: 86400, days: 86400, w: 604800, week: 604800, weeks: 604800 };

/** Durations as the CLI takes them (humantime): 30m, 12h, 7d, 1d 12h; in seconds. */
function parseDuration(text) {
  const s = text.trim().toLowerCase();
  const re = /\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*/y;
  let total = 0, pos = 0;
  while (pos < s.length) {
    re.lastIndex = pos;
    const m = re.exec(s);
    if (!m || !Object.hasOwn(DUR, m[2])) {
      throw new Error(`${JSON.stringify(text)} is not a duration (examples: 30m, 12h, 7d, 1d 12h)`);
    }
    total += Number(m[1]) * DUR[m[2]];
    pos = re.lastIndex;
  }
  if (!(total > 0)) throw new Error(`${JSON.stringify(text)} is not a duration (examples: 30m, 12h, 7d)`);
  return Math.max(1, Math.round(total));
}

/** The page has no working directory: paths must be absolute (or empty). */
function absPath(p, what) {
  if (p && !p.startsWith("/")) throw new Error(`${what} must be an absolute path (/home/...): ${JSON.stringify(p)}`);
  return p;
}

function flash(btn, text) {
  if (!btn) return;
  if (!btn.dataset.label) btn.dataset.label = btn.textContent;
  btn.textContent = text;
  clearTimeout(btn._flash);
  btn._flash = setTimeout(() => { btn.textContent = btn.dataset.label; }, 1500);
}

function selectText(node) {
  const r = document.createRange();
  r.selectNodeContents(node);
  const sel = getSelection();
  sel.removeAllRanges();
  sel.addRange(r);
}

/** Copies text; without clipboard access, selects `node` for Ctrl+C. */
async function copy(text, node, btn) {
  try {
    await navigator.clipboard.writeText(text);
    flash(btn, "copied");
  } catch {
    if (node) { selectText(node); flash(btn, "selected: Ctrl+C"); }
  }
}

// ---------------------------------------------------------------- errors

class ApiError extends Error {
  constructor(code, message) { super(message); this.code = code; }
}

function showError(e) {
  if (authFailed) return;
  if (e && e.name === "AbortError") return;
  const msg = e instanceof Error ? e.message : String(e);
  $("#error-text").textContent = `ringdropctl: ${msg}`;
  $("#error").hidden = false;
}

function clearError() {
  $("#error").hidden = true;
  $("#error-text").textContent = "";
}

/** Runs an action (a button's, a form's): its error shown, success clears it. */
async function run(btn, fn) {
  if (btn) btn.disabled = true;
  try {
    const r = await fn();
    clearError();
    return r;
  } catch (e) {
    showError(e);
  } finally {
    if (btn) btn.disabled = false;
  }
}

function onSubmit(form, fn) {
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    run(form.querySelector("[type=submit]"), () => fn(form));
  });
}

// ---------------------------------------------------------------- token and auth

function readToken() {
  const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (m) {
    token = decodeURIComponent(m[1]);
    try { sessionStorage.setItem(TOKEN_KEY, token); } catch { /* private mode: kept in memory */ }
    history.replaceState(null, "", location.pathname + location.search);
  } else {
    try { token = sessionStorage.getItem(TOKEN_KEY) || ""; } catch { token = ""; }
  }
}

function authFail() {
  if (authFailed) return;
  authFailed = true;
  for (const c of controllers) c.abort();
  controllers.clear();
  clearError();
  for (const tb of document.querySelectorAll("main tbody")) tb.replaceChildren();
  $("#main").hidden = true;
  $("#node-id").textContent = "-";
  $("#auth-error").hidden = false;
  setConn(null, "down", "no valid token");
}

// ---------------------------------------------------------------- API

async function post(path, method, request, signal) {
  if (!token) {
    authFail();
    throw new ApiError("Unauthenticated", "no valid token");
  }
  let res;
  try {
    res = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Ringdrop-Token": token },
      body: JSON.stringify({ method: method.startsWith(PKG) ? method : PKG + method, request: request || {} }),
      cache: "no-store",
      signal,
    });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError("Unavailable", "cannot reach `ringdropctl web`: is it still running?");
  }
  if (res.status === 401) {
    authFail();
    throw new ApiError("Unauthenticated", "no valid token");
  }
  if (!res.ok) {
    let body = null;
    try { body = await res.json(); } catch { /* not JSON */ }
    throw new ApiError((body && body.code) || `HTTP ${res.status}`,
      (body && body.message) || `${res.status} ${res.statusText}`.trim());
  }
  return res;
}

/** A unary call: `api("Transfers/ListTransfers", {})` → the response message. */
async function api(method, request) {
  const res = await post("/api/call", method, request);
  return res.json();
}

/**
 * A server-streaming call: onMessage(message) for each line; resolves when
 * the stream ends, rejects on an error line or a broken connection.
 */
async function stream(method, request, onMessage, opts = {}) {
  const res = await post("/api/stream", method, request, opts.signal);
  if (opts.onOpen) opts.onOpen();
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  const line = (s) => {
    if (!s.trim()) return;
    const o = JSON.parse(s);
    if (o.error) throw new ApiError(o.error.code || "Unknown", o.error.message || "the stream failed");
    if (o.message) onMessage(o.message);
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      const lines = buf.split("\n");
      buf = lines.pop();
      for (const s of lines) line(s);
    }
    line(buf + dec.decode());
  } finally {
    reader.cancel().catch(() => {});
  }
}

/** A stream kept open: reconnects after a drop (1 s, 2 s, ... at most 10 s). */
function watch(name, method, onMessage, onOpen) {
  const ctl = new AbortController();
  controllers.add(ctl);
  (async () => {
    let delay = 1000, first = true;
    while (!ctl.signal.aborted && !authFailed) {
      const started = Date.now();
      let got = false, why = "the stream ended";
      try {
        await stream(method, {}, (m) => { got = true; onMessage(m); }, {
          signal: ctl.signal,
          onOpen: () => { setConn(name, "ok"); onOpen(first); first = false; },
        });
      } catch (e) {
        why = e.message;
      }
      if (ctl.signal.aborted || authFailed) return;
      setConn(name, "reconnecting", why);
      if (got || Date.now() - started > 10000) delay = 1000;
      await sleep(delay, ctl.signal);
      delay = Math.min(delay * 2, 10000);
    }
  })();
}

const conn = new Map();
function setConn(name, state, detail) {
  if (name) conn.set(name, state);
  const states = [...conn.values()];
  const all = name === null ? state
    : states.includes("reconnecting") ? "reconnecting"
      : states.length && states.every((s) => s === "ok") ? "connected" : "connecting";
  const el = $("#conn");
  el.dataset.conn = all;
  $("#conn-text").textContent = all === "down" ? "offline" : all === "reconnecting" ? "reconnecting…" : all;
  el.title = detail || "";
}

/** One run of `fn` at a time; calls meanwhile make one more run after it. */
function coalesce(fn) {
  let running = null, again = false;
  return () => {
    if (running) { again = true; return running; }
    running = (async () => {
      try {
        do { again = false; await fn(); } while (again);
      } finally {
        running = null;
      }
    })();
    return running;
  };
}
const quiet = (p) => p.catch(showError);

// ---------------------------------------------------------------- tables

/**
 * A keyed table body: the first LIMIT rows drawn (then "show all N"), an
 * optional filter, rows updated one at a time, actions by delegation
 * (buttons with data-act).
 */
class Table {
  constructor(tbody, o) {
    this.tbody = tbody;
    this.o = o;
    this.items = new Map();
    this.order = [];
    this.rows = new Map();
    this.keyOf = new WeakMap();
    this.query = "";
    this.all = false;
    this.matched = 0;
    this.shown = 0;
    this.cols = tbody.parentElement.tHead.rows[0].cells.length;
    if (o.filter) {
      o.filter.addEventListener("input", debounce(() => {
        this.query = o.filter.value.trim().toLowerCase();
        this.all = false;
        this.render();
      }, 150));
    }
    if (o.more) o.more.addEventListener("click", () => { this.all = true; this.render(); });
    tbody.addEventListener("click", (ev) => {
      const b = ev.target.closest("button[data-act]");
      const tr = b && b.closest("tr");
      const k = tr && this.keyOf.get(tr);
      if (k !== undefined && this.items.has(k)) o.onAct(b.dataset.act, this.items.get(k), tr, b);
    });
  }

  matches(item) { return !this.query || this.o.match(item, this.query); }

  row(k, item) {
    const tr = this.o.build(item);
    this.keyOf.set(tr, k);
    this.rows.set(k, tr);
    return tr;
  }

  setAll(list) {
    this.items.clear();
    this.order = [];
    for (const it of list) {
      const k = this.o.key(it);
      if (!this.items.has(k)) this.order.push(k);
      this.items.set(k, it);
    }
    if (this.held) this.dirty = true;
    else this.render();
  }

  /** Drawing waits (the first load draws every big table in one pass). */
  hold(on) {
    this.held = on;
    if (!on && this.dirty) { this.dirty = false; this.render(); }
  }

  render() {
    this.rows.clear();
    const keys = this.query ? this.order.filter((k) => this.matches(this.items.get(k))) : this.order;
    const shown = this.all ? keys : keys.slice(0, LIMIT);
    const frag = document.createDocumentFragment();
    for (const k of shown) frag.append(this.row(k, this.items.get(k)));
    if (!shown.length) frag.append(this.emptyRow());
    this.tbody.replaceChildren(frag);
    this.matched = keys.length;
    this.shown = shown.length;
    this.footer();
  }

  emptyRow() {
    const text = this.items.size ? "Nothing matches the filter." : this.o.empty;
    return h("tr", { class: "empty" }, h("td", { colspan: this.cols }, text));
  }

  footer() {
    const more = this.o.more;
    if (more) {
      more.hidden = this.matched <= this.shown;
      more.textContent = `show all ${this.matched}`;
    }
    if (this.o.count) this.o.count.textContent = this.items.size ? `(${this.items.size})` : "";
  }

  /** Adds an item (at the top) or updates its row in place. */
  upsert(item) {
    const k = this.o.key(item);
    const old = this.items.get(k);
    this.items.set(k, item);
    const tr = this.rows.get(k);
    if (tr) {
      if (this.o.update) this.o.update(tr, item, old);
      else tr.replaceWith(this.row(k, item));
      return;
    }
    if (old) return; // known, not drawn (past the limit or filtered out)
    this.order.unshift(k);
    if (this.held) { this.dirty = true; return; }
    if (this.matches(item)) {
      if (!this.rows.size) this.tbody.replaceChildren();
      this.tbody.prepend(this.row(k, item));
      this.matched++;
      this.shown++;
    }
    this.footer();
  }

  remove(k) {
    const item = this.items.get(k);
    if (item === undefined) return;
    if (this.matches(item)) this.matched--;
    this.items.delete(k);
    const i = this.order.indexOf(k);
    if (i >= 0) this.order.splice(i, 1);
    const tr = this.rows.get(k);
    if (tr) { tr.remove(); this.rows.delete(k); this.shown--; }
    if (!this.rows.size) this.render();
    else this.footer();
  }
}

// ---------------------------------------------------------------- transfers

function buildTransfer(t) {
  const tr = document.createElement("tr");
  for (let i = 0; i < 8; i++) tr.append(document.createElement("td"));
  const c = tr.cells;
  c[0].className = "num";
  c[3].className = "progress";
  c[3].append(h("progress", { max: 1, value: 0, "aria-label": `progress of transfer ${t.id}` }), " ",
    h("span", { class: "pct" }), " ", h("span", { class: "bytes muted" }));
  c[4].className = "num";
  c[6].className = "path";
  c[7].className = "actions";
  fillTransfer(tr, t, null);
  return tr;
}

/** Fills (or refreshes) a transfer's row; cells that did not change are left alone. */
function fillTransfer(tr, t, old) {
  const c = tr.cells;
  const state = stateWord(t.state);
  tr.dataset.transferId = String(t.id);
  tr.dataset.state = stateEnum(t.state);
  if (!old) c[0].textContent = String(t.id);
  if (!old || old.name !== t.name || old.hash !== t.hash || old.serving !== t.serving) {
    fill(c[1], h("span", { class: "name" }, t.name || short(t.hash)),
      t.serving ? h("div", { class: "note" }, t.serving) : null);
  }
  if (!old || old.state !== t.state || old.last_error !== t.last_error) {
    fill(c[2], h("span", { class: `state s-${state}` }, state),
      t.last_error && state !== "completed" ? h("div", { class: "note err" }, `last error: ${t.last_error}`) : null,
      state === "ready" ? h("div", { class: "note" },
        `fetched; place the files with \`ringdropctl transfers wait ${t.id}\` (as uid ${t.owner_uid})`) : null);
  }
  const total = num(t.bytes_total), done = num(t.bytes_done);
  const cell = c[3];
  cell.dataset.bytesDone = String(done);
  const bar = cell.firstChild;
  bar.max = total || 1;
  bar.value = total ? Math.min(done, total) : 0;
  cell.querySelector(".pct").textContent = total ? `${(done * 100 / total).toFixed(1)}%` : "-";
  cell.querySelector(".bytes").textContent = `${fmtBytes(done)} / ${total ? fmtBytes(total) : "?"}`;
  c[4].textContent = num(t.rate) > 0 ? `${fmtBytes(t.rate)}/s` : "";
  const provs = t.providers || [];
  if (!old || provs.length || (old.providers || []).length) {
    fill(c[5], h("span", { class: "num" }, String(provs.length)), provs.length ? h("ul", { class: "providers" },
      ...provs.map((p) => h("li", null, `${short(p.endpoint_id)}: ${fmtBytes(p.bytes)}, ${!p.connected ? "not connected"
        : !p.path ? "connecting" : `${p.path}, rtt ${(num(p.rtt_us) / 1000).toFixed(1)} ms`}`))) : null);
  }
  if (!old || old.dest !== t.dest) c[6].textContent = t.dest;
  if (!old || old.state !== t.state) {
    const b = [];
    const id = t.id;
    if (state === "queued" || state === "running") b.push(button("pause", "pause", `pause transfer ${id}`));
    if (state === "paused" || state === "failed") b.push(button("resume", "resume", `resume transfer ${id}`));
    if (["queued", "running", "paused", "ready"].includes(state)) b.push(button("cancel", "cancel", `cancel transfer ${id}`));
    if (["completed", "failed", "cancelled"].includes(state)) b.push(button("remove", "remove", `remove transfer ${id}`));
    c[7].replaceChildren(...b);
  }
}

const transfers = new Table($("#transfers-body"), {
  key: (t) => String(t.id),
  build: buildTransfer,
  update: fillTransfer,
  match: (t, q) => (t.name || "").toLowerCase().includes(q) || (t.hash || "").includes(q),
  filter: $("#transfers-filter"),
  more: $("#transfers-more"),
  count: $("#transfers-count"),
  empty: "No transfers. Fetch a ticket above.",
  onAct: (act, t, tr, b) => run(b, async () => {
    if (act === "remove") {
      await api("Transfers/RemoveTransfer", { id: t.id });
      transfers.remove(String(t.id));
      return;
    }
    const m = { pause: "PauseTransfer", resume: "ResumeTransfer", cancel: "CancelTransfer" }[act];
    if (m) transfers.upsert(await api("Transfers/" + m, { id: t.id }));
  }),
});

let transfersPending = null; // stream messages that came while ListTransfers ran

async function loadTransfers() {
  transfersPending = [];
  try {
    const r = await api("Transfers/ListTransfers", {});
    transfers.setAll(r.transfers || []);
    for (const t of transfersPending) {
      const cur = transfers.items.get(String(t.id));
      if (!cur || num(t.updated_at) >= num(cur.updated_at)) transfers.upsert(t);
    }
  } finally {
    transfersPending = null;
  }
}

function onTransfer(t) {
  if (transfersPending) transfersPending.push(t);
  else transfers.upsert(t);
}

onSubmit($("#fetch-form"), async (f) => {
  const ticket = $("#fetch-ticket").value.trim();
  if (!ticket) throw new Error("paste a ticket to fetch");
  const out = absPath($("#fetch-out").value.trim(), "the destination");
  const r = await api("Transfers/Fetch", { ticket, out, force: $("#fetch-force").checked });
  if (r.transfer) transfers.upsert(r.transfer);
  f.reset();
});

// ---------------------------------------------------------------- shares

function buildShare(s) {
  const tr = h("tr", { data: { hash: s.hash } },
    h("td", null, h("span", { class: "name" }, s.name),
      s.changed ? h("span", { class: "flag changed", title: "a source file changed or vanished since sharing: not served until shared again" }, "changed") : null),
    h("td", null, h("code", { class: "hash" }, short(s.hash, 16))),
    h("td", { class: "num" }, fmtBytes(s.size)),
    h("td", { class: "num" }, String(num(s.files))),
    h("td", null, (s.rings || []).length ? s.rings.join(", ") : "none: nobody"),
    h("td", { class: "num" }, fmtBytes(s.bytes_served)),
    h("td", { class: "path" }, s.path),
    h("td", { class: "ticket-cell" }, h("code", { class: "ticket" }, s.ticket), " ", button("copy", "copy", `copy the ticket of ${s.name}`)),
    h("td", { class: "actions" }, button("unshare", "unshare", `unshare ${s.name}`)));
  return tr;
}

const shares = new Table($("#shares-body"), {
  key: (s) => s.hash,
  build: buildShare,
  match: (s, q) => (s.name || "").toLowerCase().includes(q) || s.hash.includes(q),
  filter: $("#shares-filter"),
  more: $("#shares-more"),
  count: $("#shares-count"),
  empty: "No shares. Share a file or directory above.",
  onAct: (act, s, tr, b) => {
    if (act === "copy") return copy(s.ticket, tr.querySelector(".ticket"), b);
    if (act === "unshare") {
      return run(b, async () => {
        await api("Shares/Unshare", { hash: s.hash });
        await loadShares();
      });
    }
  },
});

const loadShares = coalesce(async () => {
  const r = await api("Shares/ListShares", {});
  shares.setAll(r.shares || []);
});

onSubmit($("#share-form"), async (f) => {
  const path = $("#share-path").value.trim();
  if (!path) throw new Error("give the path of a file or directory to share");
  absPath(path, "the path to share");
  const rings = $("#share-rings").value.split(",").map((x) => x.trim()).filter(Boolean);
  const req = { path, name: $("#share-name").value.trim(), rings, listed: $("#share-listed").checked };
  const bar = $("#share-progress"), status = $("#share-status"), result = $("#share-result");
  result.hidden = true;
  bar.hidden = false;
  bar.removeAttribute("value");
  status.textContent = "scanning…";
  let total = 0, created = null;
  try {
    await stream("Shares/Share", req, (m) => {
      if (m.created) {
        created = m.created;
      } else if (m.scanned) {
        total = num(m.scanned.bytes);
        bar.max = total || 1;
        bar.value = 0;
        status.textContent = `hashing ${num(m.scanned.files)} files (${fmtBytes(total)})`;
      } else if (m.hashed_bytes !== undefined) {
        const n = num(m.hashed_bytes);
        bar.value = Math.min(n, bar.max);
        status.textContent = `hashed ${fmtBytes(n)} of ${fmtBytes(total)}`;
      }
    });
  } finally {
    bar.hidden = true;
    status.textContent = "";
  }
  if (!created) throw new Error("the daemon ended the share without a result");
  const s = created.share || {};
  $("#share-result-text").textContent = `${created.created ? "Shared" : "Already shared"} ${s.name || path} (${num(s.files)} files, ${fmtBytes(s.size)}) with ${(s.rings || []).join(", ") || "no ring: nobody"}. The ticket:`;
  $("#share-result .ticket").textContent = created.ticket;
  result.hidden = false;
  f.reset();
  await loadShares();
});

$("#share-result-copy").addEventListener("click", (ev) => {
  const t = $("#share-result .ticket");
  copy(t.textContent, t, ev.currentTarget);
});

// ---------------------------------------------------------------- rings and invites

let rings = [];
const members = new Map(); // ring name → members
const ringEls = new Map(); // ring name → its article
let uid = 0;

function membersTable(ring, list) {
  const tbody = h("tbody");
  for (const m of list) {
    const exp = num(m.expires_at) === 0 ? "never" : m.expired ? `expired ${fmtTime(m.expires_at)}` : fmtTime(m.expires_at);
    tbody.append(h("tr", { data: { endpointId: m.endpoint_id } },
      h("td", { class: "name" }, m.name || "-"),
      h("td", null, h("code", null, m.endpoint_id)),
      h("td", { class: m.expired ? "expired" : null }, exp),
      h("td", { class: "actions" }, button("member-remove", "remove", `remove ${m.name || short(m.endpoint_id)} from ${ring}`))));
  }
  if (!list.length) tbody.append(h("tr", { class: "empty" }, h("td", { colspan: 4 }, "No members.")));
  return h("table", { class: "members" }, h("caption", { class: "vh" }, `Members of ${ring}`),
    h("thead", null, h("tr", null, h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "Endpoint id"),
      h("th", { scope: "col" }, "Expires"), h("th", { scope: "col" }, h("span", { class: "vh" }, "Actions")))),
    tbody);
}

function countText(r, n) { return `${n} member${n === 1 ? "" : "s"}, created ${fmtTime(r.created_at)}`; }

function buildRing(r) {
  const art = h("article", { class: "ring", data: { ring: r.name } });
  if (r.name === "open") {
    art.append(h("div", { class: "ring-head" }, h("h3", null, "open"), h("span", { class: "muted" }, "built in: anyone holding the ticket")));
    return art;
  }
  const list = members.get(r.name) || [];
  const n = ++uid;
  art.append(
    h("div", { class: "ring-head" }, h("h3", null, r.name), h("span", { class: "muted ring-count" }, countText(r, list.length)),
      button("ring-remove", "remove ring", `remove ring ${r.name}`)),
    h("div", { class: "table-wrap members-wrap" }, membersTable(r.name, list)),
    h("form", { class: "form member-form" },
      h("div", { class: "field grow" }, h("label", { for: `member-peer-${n}` }, "Add member"),
        h("input", { id: `member-peer-${n}`, class: "member-peer", type: "text", autocomplete: "off", placeholder: "name, endpoint id or ticket" })),
      h("div", { class: "field" }, h("label", { for: `member-expires-${n}` }, "Expires after"),
        h("input", { id: `member-expires-${n}`, class: "member-expires", type: "text", autocomplete: "off", placeholder: "never (e.g. 7d)" })),
      h("button", { type: "submit", class: "member-add" }, "Add member")));
  ringEls.set(r.name, art);
  return art;
}

function renderRings() {
  ringEls.clear();
  const frag = document.createDocumentFragment();
  for (const r of rings) frag.append(buildRing(r));
  $("#ring-list").replaceChildren(frag);
  const sel = $("#invite-ring"), cur = sel.value;
  const names = rings.filter((r) => r.name !== "open").map((r) => r.name);
  sel.replaceChildren(...names.map((n) => h("option", { value: n }, n)));
  if (names.includes(cur)) sel.value = cur;
}

async function loadRings() {
  const r = await api("Rings/ListRings", {});
  rings = r.rings || [];
  const names = new Set(rings.map((x) => x.name));
  for (const k of [...members.keys()]) if (!names.has(k)) members.delete(k);
  await Promise.all(rings.filter((x) => x.name !== "open" && !members.has(x.name)).map(async (x) => {
    const m = await api("Rings/ListMembers", { ring: x.name });
    members.set(x.name, m.members || []);
  }));
  renderRings();
}

async function loadMembers(ring) {
  const m = await api("Rings/ListMembers", { ring });
  const list = m.members || [];
  members.set(ring, list);
  const art = ringEls.get(ring);
  const r = rings.find((x) => x.name === ring);
  if (!art || !r) return loadRings();
  art.querySelector(".ring-count").textContent = countText(r, list.length);
  art.querySelector(".members-wrap").replaceChildren(membersTable(ring, list));
}

$("#ring-list").addEventListener("click", (ev) => {
  const b = ev.target.closest("button[data-act]");
  const art = b && b.closest("article.ring");
  if (!art) return;
  const ring = art.dataset.ring;
  if (b.dataset.act === "ring-remove") {
    run(b, async () => {
      await api("Rings/RemoveRing", { name: ring });
      await loadRings();
    });
  } else if (b.dataset.act === "member-remove") {
    const peer = b.closest("tr").dataset.endpointId;
    run(b, async () => {
      await api("Rings/RemoveMember", { ring, peer });
      await loadMembers(ring);
    });
  }
});

$("#ring-list").addEventListener("submit", (ev) => {
  const form = ev.target.closest("form.member-form");
  if (!form) return;
  ev.preventDefault();
  const ring = form.closest("article.ring").dataset.ring;
  run(form.querySelector("[type=submit]"), async () => {
    const peer = form.querySelector(".member-peer").value.trim();
    if (!peer) throw new Error("give the member: an address-book name, endpoint id or ticket");
    const exp = form.querySelector(".member-expires").value.trim();
    const expires_at = exp ? Math.floor(Date.now() / 1000) + parseDuration(exp) : 0;
    await api("Rings/AddMember", { ring, peer, expires_at });
    form.reset();
    await loadMembers(ring);
  });
});

onSubmit($("#ring-create-form"), async (f) => {
  const name = $("#ring-name").value.trim();
  if (!name) throw new Error("give the new ring a name");
  await api("Rings/CreateRing", { name });
  f.reset();
  await loadRings();
});

function inviteState(i) {
  if (i.revoked) return "withdrawn";
  if (num(i.uses_left) === 0) return "used up";
  if (num(i.expires_at) && num(i.expires_at) * 1000 < Date.now()) return "expired";
  return `${i.uses_left} use(s) left`;
}

const invites = new Table($("#invites-body"), {
  key: (i) => i.id,
  build: (i) => h("tr", { data: { inviteId: i.id } },
    h("td", null, h("code", null, short(i.id, 8))),
    h("td", null, i.ring),
    h("td", null, inviteState(i)),
    h("td", { class: "num" }, String(num(i.uses))),
    h("td", null, fmtTime(i.expires_at)),
    h("td", null, num(i.member_for) ? fmtDuration(i.member_for) : "for good"),
    h("td", null, fmtTime(i.created_at)),
    h("td", { class: "actions" }, i.revoked ? null : button("withdraw", "withdraw", `withdraw invite ${short(i.id, 8)}`))),
  match: () => true,
  empty: "No invites.",
  onAct: (act, i, tr, b) => run(b, async () => {
    await api("Rings/RevokeInvite", { id: i.id });
    await loadInvites();
  }),
});

const loadInvites = coalesce(async () => {
  const r = await api("Rings/ListInvites", { ring: "" });
  invites.setAll(r.invites || []);
});

onSubmit($("#invite-form"), async () => {
  const ring = $("#invite-ring").value;
  if (!ring) throw new Error("create a ring first: an invite makes its holder a member of a ring");
  const uses = parseInt($("#invite-uses").value || "1", 10);
  if (!(uses >= 1)) throw new Error("uses: at least 1");
  const vf = $("#invite-valid-for").value.trim(), mf = $("#invite-member-for").value.trim();
  const i = await api("Rings/CreateInvite", {
    ring, uses, valid_for: vf ? parseDuration(vf) : 0, member_for: mf ? parseDuration(mf) : 0,
  });
  $("#invite-result-text").textContent = `Invite to ${i.ring}, valid until ${fmtTime(i.expires_at)}, ${i.uses_left} use(s). On the other machine: ringdropctl ring join TICKET, with this ticket:`;
  $("#invite-result .ticket").textContent = i.ticket;
  $("#invite-result").hidden = false;
  $("#invite-valid-for").value = "";
  $("#invite-member-for").value = "";
  await loadInvites();
});

$("#invite-result-copy").addEventListener("click", (ev) => {
  const t = $("#invite-result .ticket");
  copy(t.textContent, t, ev.currentTarget);
});

onSubmit($("#join-form"), async (f) => {
  const invite = $("#join-invite").value.trim();
  if (!invite) throw new Error("paste an invite");
  const j = await api("Rings/JoinRing", { invite, name: $("#join-name").value.trim() });
  const until = num(j.member_until) ? ` until ${fmtTime(j.member_until)}` : "";
  $("#join-result").textContent = `Joined ring ${j.ring} of ${j.name} (${j.endpoint_id})${until}; it is in your address book as ${j.name}.`;
  f.reset();
  await loadPeers();
});

// ---------------------------------------------------------------- inbox and sent

const who = (name, id) => name || short(id);

const inbox = new Table($("#inbox-body"), {
  key: (o) => String(o.id),
  build: (o) => {
    const pending = o.state === "new";
    const dir = `accept-dir-${o.id}`;
    return h("tr", { data: { offerId: String(o.id) } },
      h("td", { class: "num" }, String(o.id)),
      h("td", { title: o.from }, who(o.from_name, o.from)),
      h("td", { class: "name" }, o.name),
      h("td", { class: "num" }, fmtBytes(o.size)),
      h("td", { class: "num" }, String(num(o.files))),
      h("td", null, fmtTime(o.received_at)),
      h("td", { class: "state" }, o.state),
      h("td", { class: "num" }, num(o.transfer_id) ? String(o.transfer_id) : ""),
      h("td", { class: "actions" }, ...(pending ? [
        h("label", { class: "vh", for: dir }, `destination for offer ${o.id}`),
        h("input", { id: dir, class: "accept-dir", type: "text", autocomplete: "off", spellcheck: "false", placeholder: "destination (absolute; empty: Downloads)" }),
        button("accept", "accept", `accept offer ${o.id}`), button("reject", "reject", `reject offer ${o.id}`),
      ] : [button("remove", "remove", `remove offer ${o.id}`)])));
  },
  match: () => true,
  count: $("#inbox-count"),
  empty: "The inbox is empty.",
  onAct: (act, o, tr, b) => run(b, async () => {
    if (act === "accept") {
      const out = absPath(tr.querySelector(".accept-dir").value.trim(), "the destination");
      const r = await api("Contacts/AcceptOffer", { id: o.id, out, force: false });
      if (r.transfer) transfers.upsert(r.transfer);
    } else if (act === "reject") {
      await api("Contacts/RejectOffer", { id: o.id });
    } else if (act === "remove") {
      await api("Contacts/RemoveInboxOffer", { id: o.id });
    }
    await loadInbox();
  }),
});

const loadInbox = coalesce(async () => {
  const r = await api("Contacts/ListInbox", {});
  // Keep what was typed in the destination fields across the redraw.
  const typed = new Map();
  for (const i of $("#inbox-body").querySelectorAll(".accept-dir")) if (i.value) typed.set(i.id, i.value);
  inbox.setAll(r.offers || []);
  for (const [id, v] of typed) { const i = document.getElementById(id); if (i) i.value = v; }
  const refused = num(r.refused);
  $("#inbox-refused").textContent = refused
    ? `${refused} offers refused since the daemon started: not from a contact, or past the inbox's limits.` : "";
});

const SENT_OPEN = ["queued", "delivered", "accepted", "fetching"];

const sent = new Table($("#sent-body"), {
  key: (o) => String(o.id),
  build: (o) => {
    let state = o.state;
    if (o.state === "fetching") state += ` ${fmtBytes(o.bytes)} of ${fmtBytes(o.size)}`;
    const why = o.last_error && (o.state === "queued" || o.state === "refused") ? o.last_error : "";
    return h("tr", { data: { sentId: String(o.id) } },
      h("td", { class: "num" }, String(o.id)),
      h("td", { title: o.peer }, who(o.peer_name, o.peer)),
      h("td", { class: "name" }, o.name),
      h("td", { class: "num" }, fmtBytes(o.size)),
      h("td", { class: "state" }, state, why ? h("div", { class: "note err" }, why) : null),
      h("td", null, fmtTime(o.created_at)),
      h("td", null, fmtTime(o.expires_at)),
      h("td", { class: "actions" }, SENT_OPEN.includes(o.state)
        ? button("withdraw", "withdraw", `withdraw offer ${o.id}`) : button("remove", "remove", `remove offer ${o.id}`)));
  },
  match: () => true,
  count: $("#sent-count"),
  empty: "Nothing sent.",
  onAct: (act, o, tr, b) => run(b, async () => {
    await api(act === "withdraw" ? "Contacts/Withdraw" : "Contacts/RemoveSent", { id: o.id });
    await loadSent();
  }),
});

const loadSent = coalesce(async () => {
  const r = await api("Contacts/ListSent", {});
  sent.setAll(r.offers || []);
});

onSubmit($("#send-form"), async (f) => {
  const peer = $("#send-peer").value.trim();
  const path = $("#send-path").value.trim();
  if (!peer || !path) throw new Error("give the peer and the path to send");
  absPath(path, "the path to send");
  const exp = $("#send-expires").value.trim();
  await api("Contacts/Send", { peer, path, expires_in: exp ? parseDuration(exp) : 0 });
  f.reset();
  await loadSent();
});

$("#inbox-refresh").addEventListener("click", (ev) => run(ev.currentTarget, loadInbox));
$("#sent-refresh").addEventListener("click", (ev) => run(ev.currentTarget, loadSent));

// ---------------------------------------------------------------- peers and trust

const peers = new Table($("#peers-body"), {
  key: (p) => p.name,
  build: (p) => h("tr", { data: { peerName: p.name, endpointId: p.endpoint_id } },
    h("td", { class: "name" }, p.name),
    h("td", null, h("code", null, p.endpoint_id)),
    h("td", null, [...(p.direct_addresses || []), p.relay_url].filter(Boolean).join(", ") || "-"),
    h("td", null, fmtTime(p.updated_at)),
    h("td", { class: "actions" }, button("trust", "trust…", `trust ${p.name}`),
      button("untrust", "untrust", `untrust ${p.name}`), button("remove", "remove", `remove ${p.name}`))),
  match: () => true,
  count: $("#peers-count"),
  empty: "The address book is empty. Add a peer above.",
  onAct: (act, p, tr, b) => {
    if (act === "trust") {
      $("#trust-peer").value = p.name;
      $("#trust-into").focus();
      return;
    }
    return run(b, async () => {
      if (act === "untrust") {
        const r = await api("Contacts/UntrustPeer", { peer: p.name });
        $("#trust-result").textContent = `Offers from ${r.name || r.peer} wait in the inbox again.`;
      } else if (act === "remove") {
        await api("Peers/RemovePeer", { name: p.name });
        await loadPeers();
      }
    });
  },
});

const loadPeers = coalesce(async () => {
  const r = await api("Peers/ListPeers", {});
  peers.setAll(r.peers || []);
});

onSubmit($("#peer-add-form"), async (f) => {
  const name = $("#peer-name").value.trim(), endpoint = $("#peer-endpoint").value.trim();
  if (!name || !endpoint) throw new Error("give a name and an endpoint id or ticket");
  await api("Peers/AddPeer", { name, endpoint });
  f.reset();
  await loadPeers();
});

onSubmit($("#trust-form"), async (f) => {
  const peer = $("#trust-peer").value.trim(), into = $("#trust-into").value.trim();
  if (!peer || !into) throw new Error("give the peer and the directory its offers are fetched into");
  absPath(into, "the directory");
  const size = $("#trust-max-size").value.trim(), day = $("#trust-max-per-day").value.trim();
  const r = await api("Contacts/TrustPeer", {
    peer, accept_into: into, max_size: size ? parseBytes(size) : 0, max_per_day: day ? parseBytes(day) : 0,
  });
  const upTo = num(r.max_size) ? ` up to ${fmtBytes(r.max_size)}` : "";
  $("#trust-result").textContent = `Offers from ${r.name || r.peer} are fetched into ${r.accept_into}${upTo}, ${fmtBytes(r.max_per_day)} a day at most, by themselves.`;
  f.reset();
});

// ---------------------------------------------------------------- limits

function renderLimits(v) {
  const orNormal = (r) => (num(r) ? rateText(r) : "as above");
  const rows = [
    ["upload", rateText(v.up)],
    ["download", rateText(v.down)],
    ["alternative", v.alt_hours
      ? `upload ${orNormal(v.alt_up)}, download ${orNormal(v.alt_down)}, ${v.alt_hours} on ${v.alt_days}${v.alt_active ? " (in force now)" : ""}`
      : "no schedule"],
    ["in force", `upload ${rateText(v.up_now)}, download ${rateText(v.down_now)} (${v.source === "set" ? "set here or with ringdropctl limits" : "from the config"})`],
  ];
  $("#limits-view").replaceChildren(...rows.flatMap(([k, val]) => [h("dt", null, k), h("dd", null, val)]));
  const rowsOf = (tbody, list, cols, row, empty) => tbody.replaceChildren(...(list.length ? list.map(row)
    : [h("tr", { class: "empty" }, h("td", { colspan: cols }, empty))]));
  rowsOf($("#limits-peers-body"), v.peers || [], 3, (p) => h("tr", { data: { peer: p.peer } },
    h("td", { class: "name" }, p.name ? `${p.name} (${short(p.peer)})` : p.peer),
    h("td", null, rateText(p.up)), h("td", null, rateText(p.down))), "No peer limits.");
  rowsOf($("#limits-transfers-body"), v.transfers || [], 2, (t) => h("tr", { data: { transferId: String(t.id) } },
    h("td", { class: "num" }, String(t.id)), h("td", null, rateText(t.down))), "No transfer limits.");
  const ph = { "#limit-up": rateText(v.up), "#limit-down": rateText(v.down), "#limit-alt-up": orNormal(v.alt_up),
    "#limit-alt-down": orNormal(v.alt_down), "#limit-alt-hours": v.alt_hours || "off", "#limit-alt-days": v.alt_days || "all" };
  for (const k in ph) $(k).placeholder = ph[k];
}

async function loadLimits() {
  renderLimits(await api("Limits/GetLimits", {}));
}

onSubmit($("#limits-form"), async (f) => {
  const req = {};
  if ($("#limit-reset").checked) req.reset = true;
  for (const [sel, field] of [["#limit-up", "up"], ["#limit-down", "down"], ["#limit-alt-up", "alt_up"], ["#limit-alt-down", "alt_down"]]) {
    const v = $(sel).value.trim();
    if (v) req[field] = parseRate(v);
  }
  const hours = $("#limit-alt-hours").value.trim(), days = $("#limit-alt-days").value.trim();
  if (hours) req.alt_hours = hours === "off" ? "" : hours;
  if (days) req.alt_days = days;
  if (!Object.keys(req).length) throw new Error("nothing to change: give a rate (10M, 512K, 0 for unlimited), hours or days");
  renderLimits(await api("Limits/SetLimits", req));
  f.reset();
});

onSubmit($("#peer-limit-form"), async (f) => {
  const peer = $("#peer-limit-peer").value.trim();
  if (!peer) throw new Error("give the peer: an endpoint id or address-book name");
  const change = { peer };
  const up = $("#peer-limit-up").value.trim(), down = $("#peer-limit-down").value.trim();
  if (up) change.up = parseRate(up);
  if (down) change.down = parseRate(down);
  if (!up && !down) throw new Error("give an upload or download rate (10M, 512K, 0 for unlimited)");
  renderLimits(await api("Limits/SetLimits", { peers: [change] }));
  f.reset();
});

onSubmit($("#transfer-limit-form"), async (f) => {
  const id = parseInt($("#transfer-limit-id").value, 10);
  if (!(id > 0)) throw new Error("give the transfer's id");
  const down = $("#transfer-limit-down").value.trim();
  if (!down) throw new Error("give a download rate (10M, 512K; 0 removes its limit)");
  renderLimits(await api("Limits/SetTransferLimit", { id, down: parseRate(down) }));
  f.reset();
});

$("#limits-refresh").addEventListener("click", (ev) => run(ev.currentTarget, loadLimits));

// ---------------------------------------------------------------- status and events

async function loadStatus() {
  const s = await api("Node/GetStatus", {});
  nodeId = s.endpoint_id;
  const b = $("#node-id");
  b.textContent = short(nodeId);
  b.dataset.label = short(nodeId);
  b.title = `${nodeId} (click to copy)`;
  $("#node-version").textContent = `ringdropd ${s.version}`;
}

$("#node-id").addEventListener("click", (ev) => {
  const b = ev.currentTarget;
  if (!nodeId) return;
  copy(nodeId, null, b).then(() => {
    if (b.textContent !== "copied") { b.textContent = nodeId; selectText(b); }
  });
});

function eventText(e) {
  switch (e.kind) {
    case "TRANSFER_ENDED":
      return `transfer ${e.transfer_id} ${e.state} ${e.name} -> ${e.dest}${e.error ? `: ${e.error}` : ""}`;
    case "SHARE_SERVED":
      return `served ${fmtBytes(e.bytes)} of ${e.name || short(e.share)} to ${short(e.peer)}${e.completed ? "" : " (cut short)"}`;
    case "EVENTS_LOST":
      return `(${e.count} events missed: this page read too slowly)`;
    case "OFFER_RECEIVED":
      return `offer ${e.offer_id} from ${e.name || short(e.peer)} (${short(e.peer)}): ${e.share} (${fmtBytes(e.bytes)}); see the inbox`;
    case "MEMBER_JOINED":
      return `${e.name} (${short(e.peer)}) joined ring ${e.ring}`;
    case "PROVIDER_CHANGED":
      return e.connected ? `transfer ${e.transfer_id} fetches from ${short(e.peer)} (${e.path})`
        : `transfer ${e.transfer_id} lost provider ${short(e.peer)}`;
    default:
      return `(an event of a newer ringdropd: kind ${e.kind})`;
  }
}

function onEvent(e) {
  const list = $("#events-list");
  const at = num(e.at) ? new Date(num(e.at) * 1000) : new Date();
  list.prepend(h("li", { class: `ev-${String(e.kind).toLowerCase()}` },
    h("time", { datetime: at.toISOString() }, TF.format(at)), " ", eventText(e)));
  while (list.childElementCount > EVENTS_KEEP) list.lastElementChild.remove();
  $("#events-empty").hidden = true;
  if (e.kind === "OFFER_RECEIVED") quiet(loadInbox());
  else if (e.kind === "MEMBER_JOINED") {
    if (e.ring) quiet(loadMembers(e.ring));
    quiet(loadInvites());
    quiet(loadPeers());
  }
}

// ---------------------------------------------------------------- start

async function start() {
  authFailed = false;
  conn.clear();
  members.clear();
  $("#auth-error").hidden = true;
  $("#main").hidden = false;
  setConn("transfers", "connecting");
  setConn("events", "connecting");
  transfers.hold(true);
  shares.hold(true);
  const loads = [loadStatus(), loadTransfers(), loadShares(), loadRings(), loadInvites(),
    loadInbox(), loadSent(), loadPeers(), loadLimits()].map(quiet);
  // Started after ListTransfers is asked for: what comes meanwhile waits for the list.
  watch("transfers", "Transfers/WatchTransfers", onTransfer, (first) => {
    if (!first) { quiet(loadTransfers()); quiet(loadStatus()); }
  });
  watch("events", "Node/WatchEvents", onEvent, (first) => {
    if (!first) quiet(loadInbox());
  });
  await Promise.all(loads);
  transfers.hold(false);
  shares.hold(false);
  performance.mark("rd-ready");
  document.body.dataset.ready = "1";
}

$("#error-dismiss").addEventListener("click", clearError);

onSubmit($("#token-form"), async () => {
  const t = $("#token-input").value.trim().replace(/^.*#token=/, "");
  if (!t) return;
  token = t;
  try { sessionStorage.setItem(TOKEN_KEY, t); } catch { /* kept in memory */ }
  $("#token-input").value = "";
  await start();
});

// A link with a token opened in this tab again (only the fragment changes,
// so the page is not loaded anew): start over with it.
window.addEventListener("hashchange", () => {
  if (!/(?:^#|&)token=/.test(location.hash)) return;
  readToken();
  for (const c of controllers) c.abort();
  controllers.clear();
  delete document.body.dataset.ready;
  start();
});

readToken();
if (token) {
  start();
} else {
  authFail();
  document.body.dataset.ready = "1";
}
