// Lunora Edge dashboard: log in, then an overview of all channels, one channel's live status
// (switching, destinations, the HLS preview, ingest help) over Server-Sent Events, sources
// (channels and inputs, with forms generated from the server's JSON Schema), users and API
// tokens. No framework. Every string from the server goes in through textContent, never as
// HTML; a secret (password, passphrase, stream key, token) leaves the DOM as soon as its form
// is sent, and a generated one is shown once, in a box that is removed when dismissed.

// Roles in rising order; a role can do everything the ones before it can.
const RANK = { user: 0, admin: 1, superadmin: 2 };
const ROLES = Object.keys(RANK);

// Which role a page needs.
const PAGES = { overview: "user", channel: "user", sources: "admin", cloud: "admin", golive: "admin", users: "superadmin", account: "user" };

const state = {
  me: null,                 // the session: { username, role, must_change_password, via }
  channels: [],
  haveStatus: false,        // a status has arrived since logging in
  channel: null,            // selected channel id
  page: null,
  system: { addresses: [] },
  offline: false,
  bitrates: new Map(),      // "channel/input" -> last 60 input bitrates (bit/s)
  outputRates: new Map(),   // "channel/output" -> { bytes, at, bps }
  editing: null,            // destination id being edited
  users: [],
};

// ---- small helpers ----------------------------------------------------------------------

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const $ = (selector) => document.querySelector(selector);
const $$ = (selector) => [...document.querySelectorAll(selector)];
const path = (...parts) => parts.map(encodeURIComponent).join("/");

function pill(text, tone) {
  return el("span", { class: `pill pill-${tone}` }, text);
}

function formatBitrate(bps) {
  if (!Number.isFinite(bps) || bps <= 0) return "—";
  return bps >= 1e6 ? `${(bps / 1e6).toFixed(bps >= 1e7 ? 0 : 1)} Mbit/s` : `${Math.round(bps / 1e3)} kbit/s`;
}

function formatTime(rfc3339) {
  const date = new Date(rfc3339);
  return Number.isNaN(date.getTime()) ? rfc3339 : date.toLocaleTimeString();
}

function formatDate(rfc3339) {
  if (!rfc3339) return "never";
  const date = new Date(rfc3339);
  return Number.isNaN(date.getTime()) ? String(rfc3339) : date.toLocaleString();
}

const can = (role) => Boolean(state.me) && (RANK[state.me.role] ?? 0) >= RANK[role];

let toastTimer = null;
function notify(text, tone = "ok") {
  const toast = $("#toast");
  toast.textContent = text;
  toast.className = `toast toast-${tone}`;
  toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { toast.hidden = true; }, tone === "ok" ? 4000 : 10000);
}

// ---- the API ------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message, data) {
    super(message);
    this.status = status;
    this.data = data;
  }

  get problems() {
    return this.data && Array.isArray(this.data.problems) ? this.data.problems.map(String) : [];
  }
}

// One JSON call. Changes always carry `Content-Type: application/json` and a JSON body (`{}`
// when there is nothing to say): the server takes cookie-authenticated changes only so, which
// a cross-site form cannot send. A 401 anywhere means the session is gone: back to the login.
async function api(method, url, body, { loginOn401 = true } = {}) {
  const init = { method, headers: { Accept: "application/json" } };
  if (method !== "GET") {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body === undefined ? {} : body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch {
    setOffline(true);
    throw new ApiError(0, "lunora is not reachable, so nothing was done; try again when it is back", null);
  }
  setOffline(false);
  const text = await response.text().catch(() => "");
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (response.status === 401 && loginOn401) sessionEnded();
  // Wrong role: perhaps a superadmin changed ours meanwhile; show what we may do now.
  if (response.status === 403 && state.me && url !== "/api/v1/session") recheckRole();
  if (!response.ok) {
    const message = data && typeof data.error === "string"
      ? data.error
      : `${method} ${url} failed with HTTP ${response.status}; lunora's log says why`;
    throw new ApiError(response.status, message, data);
  }
  return data;
}

// ---- reachability -------------------------------------------------------------------------

const live = { source: null, reconnect: null, probe: null };

// While lunora is unreachable every action is disabled (through the fieldsets that hold
// them) and the live values are greyed out; it comes back on its own.
function setOffline(offline) {
  if (state.offline === offline) return;
  state.offline = offline;
  document.body.classList.toggle("offline", offline);
  $("#offline-banner").hidden = !offline;
  for (const set of $$("fieldset[data-actions]")) set.disabled = offline;
  clearInterval(live.probe);
  if (offline) {
    setConnection("offline", "bad");
    live.probe = setInterval(probe, 2000);
  } else {
    backOnline();
  }
}

async function probe() {
  try {
    await api("GET", "/api/v1/session");
  } catch {
    // api() has marked lunora unreachable or shown the login.
  }
}

function backOnline() {
  if (!state.me) {
    if ($("#login-view").hidden && $("#password-view").hidden) boot();
    return;
  }
  if (!live.source) connect();
  loadSystem();
  refreshChannels();
}

function setConnection(text, tone) {
  const connection = $("#connection");
  connection.textContent = text;
  connection.className = `pill pill-${tone}`;
}

// ---- confirmation -------------------------------------------------------------------------

// Asks in a <dialog> (the page keeps updating meanwhile, unlike confirm()). Resolves to false
// when cancelled; to true, or with `password` to the typed password, when confirmed.
function ask(text, { confirm = "Confirm", danger = false, password = false } = {}) {
  const dialog = $("#confirm-dialog");
  if (dialog.open) dialog.close("cancel");
  $("#confirm-text").textContent = text;
  const yes = $("#confirm-yes");
  yes.textContent = confirm;
  yes.className = danger ? "danger" : "";
  const field = $("#confirm-password");
  $("#confirm-password-label").hidden = !password;
  field.required = password;
  field.value = "";
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      const typed = field.value;
      field.value = "";
      if (dialog.returnValue !== "ok") resolve(false);
      else resolve(password ? typed : true);
    }, { once: true });
    dialog.showModal();
    if (password) field.focus();
  });
}

// ---- copy to clipboard (works on plain http too, where navigator.clipboard is missing) ----

async function copy(text, button) {
  let copied = false;
  try {
    await navigator.clipboard.writeText(text);
    copied = true;
  } catch {
    const area = el("textarea", { class: "offscreen", readonly: true, "aria-hidden": "true" });
    area.value = text;
    document.body.append(area);
    area.select();
    try { copied = document.execCommand("copy"); } catch { copied = false; }
    area.remove();
  }
  const label = button.textContent;
  button.textContent = copied ? "Copied" : "Select it and copy by hand";
  setTimeout(() => { button.textContent = label; }, 1500);
}

function copyRow(label, value, testid) {
  const button = el("button", { type: "button", onclick: (e) => copy(value, e.currentTarget) }, "Copy");
  return el("div", { class: "copy-row" }, el("span", { class: "muted" }, `${label}:`), el("code", { "data-testid": testid }, value), button);
}

// A secret the server hands out once (stream key, API token): shown in a box with copy
// buttons until the operator dismisses it, leaving the page, or logging out removes it.
function showOnce(container, { title, summary, rows, note }) {
  const slug = (label) => label.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "");
  const box = el("div", { class: "once", role: "alert", "data-testid": "once" },
    el("h3", {}, title),
    el("p", { class: "once-warn" }, "Shown once: copy it now. lunora will not show it again."),
    summary ? el("p", { "data-testid": "once-summary" }, el("code", {}, summary)) : null,
    rows.map(([label, value]) => copyRow(label, value, `once-value-${slug(label)}`)),
    note ? el("p", { class: "muted" }, note) : null,
    el("div", { class: "buttons" }, el("button", { type: "button", "data-testid": "once-dismiss", onclick: () => box.remove() }, "Done: I have copied it")));
  container.replaceChildren(box);
  box.scrollIntoView({ behavior: "smooth", block: "center" });
}

function removeOnceBoxes() {
  for (const box of $$(".once")) box.remove();
}

// ---- session ------------------------------------------------------------------------------

function show(view) {
  $("#login-view").hidden = view !== "login";
  $("#password-view").hidden = view !== "password";
  $("#app").hidden = view !== "app";
}

function clearSecrets() {
  for (const field of $$('input[type="password"]')) field.value = "";
  removeOnceBoxes();
}

function showLogin(message = "") {
  show("login");
  $("#login-message").textContent = message;
  const form = $("#login-form");
  form.password.value = "";
  (form.username.value ? form.password : form.username).focus();
}

// The session ended (expired, logged out elsewhere, or 401 from any call): drop everything
// the user had open and ask for the login again. The URL stays, so the page comes back.
function sessionEnded() {
  const wasIn = Boolean(state.me);
  leaveApp();
  if (wasIn || $("#login-view").hidden) showLogin(wasIn ? "Your session has ended; log in again." : "");
}

function leaveApp() {
  state.me = null;
  disconnect();
  stopPlayer();
  closeEditor();
  resetForm();
  clearSecrets();
  state.channels = [];
  state.haveStatus = false;
  state.users = [];
  state.page = null;
  sources.cards.clear();
  $("#sources-list").replaceChildren();
  $("#store-banner").hidden = true;
}

function onSession(session) {
  state.me = session;
  if (session.must_change_password) {
    show("password");
    $("#password-form").current_password.focus();
  } else {
    enterApp();
  }
}

async function logIn(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const message = $("#login-message");
  const username = form.username.value.trim();
  const password = form.password.value;
  form.password.value = "";
  message.textContent = "";
  const button = form.querySelector('button[type="submit"]');
  button.disabled = true;
  try {
    const session = await api("POST", "/api/v1/session", { username, password }, { loginOn401: false });
    onSession({ via: "session", ...session });
  } catch (error) {
    if (error.status === 401) message.textContent = error.data ? error.message : "Wrong username or password.";
    else if (error.status === 429) message.textContent = error.data ? error.message : "Too many failed logins from this address; wait a few minutes and try again.";
    else message.textContent = error.message;
    form.password.focus();
  } finally {
    button.disabled = false;
  }
}

async function logOut() {
  try {
    await api("DELETE", "/api/v1/session", {}, { loginOn401: false });
  } catch (error) {
    if (error.status !== 401) {
      notify(error.message, "bad");
      return;
    }
  }
  leaveApp();
  showLogin("You are logged out.");
}

// Both password forms (the forced one after login, and the account page's).
async function changePassword(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const message = form.querySelector(".form-message");
  const current = form.current_password.value;
  const next = form.new_password.value;
  const repeat = form.repeat_password.value;
  // The passwords leave the page at once, whatever the answer.
  form.current_password.value = "";
  form.new_password.value = "";
  form.repeat_password.value = "";
  message.className = "form-message error";
  if (next !== repeat) {
    message.textContent = "The two new passwords differ; type them again.";
    return;
  }
  if (next.length < 8) {
    message.textContent = "The new password needs 8 or more characters.";
    return;
  }
  try {
    // A wrong current password must not look like an ended session.
    await api("PUT", "/api/v1/session/password", { current_password: current, new_password: next }, { loginOn401: false });
    message.className = "form-message ok";
    message.textContent = "Password changed.";
    if (state.me && state.me.must_change_password) {
      state.me.must_change_password = false;
      message.textContent = "";
      enterApp();
    }
  } catch (error) {
    message.textContent = [error.message, ...error.problems].join(" ");
  }
}

async function recheckRole() {
  let session;
  try {
    session = await api("GET", "/api/v1/session");
  } catch {
    return;
  }
  if (!state.me || !session || session.role === state.me.role) return;
  state.me = { ...state.me, ...session };
  notify(`Your role is now ${session.role}.`, "warn");
  applyRole();
  route();
}

function applyRole() {
  for (const node of $$("[data-role]")) node.hidden = !can(node.dataset.role);
  $("#me-name").textContent = state.me.username;
  $("#me-role").textContent = state.me.role;
  // A token can have the owner's role or a lower one.
  const mine = RANK[state.me.role] ?? 0;
  $("#token-form").elements.role.replaceChildren(
    el("option", { value: "" }, `same as mine (${state.me.role})`),
    ...ROLES.filter((r) => RANK[r] < mine).map((r) => el("option", { value: r }, r)));
}

function enterApp() {
  show("app");
  applyRole();
  connect();
  loadSystem();
  refreshChannels();
  route();
}

async function boot() {
  try {
    const session = await api("GET", "/api/v1/session", undefined, { loginOn401: false });
    onSession(session);
  } catch (error) {
    if (error.status === 401) showLogin();
    else if (error.status !== 0) showLogin(error.message);
    // Unreachable: the offline banner shows, and backOnline() boots again.
  }
}

// ---- system facts -------------------------------------------------------------------------

async function loadSystem() {
  try {
    state.system = await api("GET", "/api/v1/system");
  } catch {
    return;
  }
  const store = state.system && state.system.store;
  const banner = $("#store-banner");
  banner.hidden = !store || store.ok !== false;
  if (!banner.hidden) {
    banner.textContent = `saved settings could not be read: ${store.problem || "no reason given"}; destinations were not started`;
  }
  render();
}

// ---- navigation ---------------------------------------------------------------------------

// #/ overview, #/channel/<id>, #/sources, #/users, #/account: a reload keeps the page.
function parseRoute() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map((p) => {
    try { return decodeURIComponent(p); } catch { return p; }
  });
  return { page: parts[0] || "overview", channel: parts[1] || null, input: parts[2] || null };
}

function route() {
  if (!state.me || state.me.must_change_password) return;
  const { page, channel, input } = parseRoute();
  if (!(page in PAGES) || !can(PAGES[page])) {
    location.replace("#/");
    return;
  }
  if (page === "channel" || page === "cloud") {
    if (channel) state.channel = channel;
    else {
      const fallback = state.channel || (state.channels[0] && state.channels[0].id);
      if (fallback) {
        location.replace(`#/${page}/${encodeURIComponent(fallback)}`);
        return;
      }
    }
  }
  if (page !== state.page) {
    removeOnceBoxes();
    if (page !== "channel") stopPlayer();
    if (page !== "cloud") leaveCloud();
    if (page !== "sources") closeEditor();
  }
  if (page !== "golive" || golive.channel !== channel || golive.input !== input) stopGoLive("left the page");
  if (page === "golive") {
    golive.channel = channel;
    golive.input = input;
  }
  state.page = page;
  for (const node of $$("[data-page]")) node.hidden = node.dataset.page !== page;
  for (const link of $$("[data-nav]")) {
    if (link.dataset.nav === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const titles = { overview: "Overview", channel: `Channel ${state.channel || ""}`, sources: "Sources", cloud: `Cloud ${state.channel || ""}`, golive: `Go live ${channel || ""}/${input || ""}`, users: "Users", account: "Account" };
  document.title = `${titles[page]} — Lunora Edge`;
  if (page === "users") loadUsers();
  if (page === "cloud") loadCloud();
  if (page === "account") loadTokens();
  if (page === "golive") $("#golive-title").textContent = `Go live to ${channel || "?"} / ${input || "?"}`;
  render();
}

// ---- live updates -------------------------------------------------------------------------

function connect() {
  disconnect();
  const events = new EventSource("/api/v1/events");
  live.source = events;
  setConnection("connecting…", "muted");
  events.addEventListener("open", () => {
    setConnection("connected to box", "ok");
    setOffline(false);
  });
  events.addEventListener("status", (event) => onStatus(JSON.parse(event.data)));
  events.addEventListener("error", () => {
    if (live.source !== events) return;
    if (!state.offline) setConnection("reconnecting…", "warn");
    // EventSource does not say why: find out whether lunora is gone or the session is.
    probe();
    if (events.readyState === EventSource.CLOSED) {
      // It gave up (an HTTP error, not a network one): try again in a moment.
      live.source = null;
      clearTimeout(live.reconnect);
      live.reconnect = setTimeout(() => { if (state.me && !live.source) connect(); }, 3000);
    }
  });
}

function disconnect() {
  clearTimeout(live.reconnect);
  if (live.source) live.source.close();
  live.source = null;
}

async function refreshChannels() {
  try {
    onStatus(await api("GET", "/api/v1/channels"));
  } catch {
    // The events bring it soon; api() has dealt with offline and 401.
  }
}

function onStatus(channels) {
  if (!state.me || !Array.isArray(channels)) return;
  for (const channel of channels) {
    for (const input of channel.inputs) {
      const key = `${channel.id}/${input.id}`;
      const history = state.bitrates.get(key) || [];
      history.push(input.bitrate_bps || 0);
      if (history.length > 60) history.shift();
      state.bitrates.set(key, history);
    }
  }
  state.channels = channels;
  state.haveStatus = true;
  render();
}

function currentChannel() {
  return state.channels.find((c) => c.id === state.channel) || null;
}

function render() {
  if (!state.me || !state.page) return;
  renderChannelPicker();
  if (state.page === "overview") renderOverview();
  else if (state.page === "channel") renderChannelPage();
  else if (state.page === "sources") renderSources();
}

function renderChannelPicker() {
  const select = $("#channel");
  const ids = state.channels.map((c) => c.id);
  if (select.options.length !== ids.length || ids.some((id, i) => select.options[i].value !== id)) {
    select.replaceChildren(...ids.map((id) => el("option", { value: id }, id)));
  }
  if (!state.channel && ids.length) state.channel = ids[0];
  select.value = state.channel || "";
  select.closest("label").hidden = !["channel", "cloud"].includes(state.page) || ids.length < 2;
  $("#nav-channel").href = state.channel ? `#/channel/${encodeURIComponent(state.channel)}` : "#/channel";
  $("#nav-cloud").href = state.channel ? `#/cloud/${encodeURIComponent(state.channel)}` : "#/cloud";
}

// ---- overview -----------------------------------------------------------------------------

function renderOverview() {
  const list = $("#overview-list");
  if (!state.channels.length) {
    const text = !state.haveStatus ? "Loading…" : can("admin") ? "No channels yet: add one on the Sources page." : "No channels yet.";
    list.replaceChildren(el("p", { class: "muted" }, text));
    return;
  }
  list.replaceChildren(...state.channels.map((channel) => {
    const outputs = channel.outputs || [];
    const liveOutputs = outputs.filter((o) => o.state === "live").length;
    return el("a", { class: "channel-card", href: `#/channel/${encodeURIComponent(channel.id)}`, "data-testid": `overview-${channel.id}` },
      el("h3", {}, el("span", { class: "channel-id" }, channel.id), " ", el("span", { class: "muted" }, channel.mode)),
      el("div", { class: "on-air small" }, el("span", {}, "On air"),
        el("strong", { "data-testid": `overview-on-air-${channel.id}` }, channel.active_input || "nothing"),
        channel.forced_input ? pill("forced", "warn") : null),
      el("ul", { class: "input-list" }, channel.inputs.map((input) => el("li", { "data-testid": `overview-input-${channel.id}-${input.id}` },
        el("strong", {}, input.id), el("span", { class: "muted" }, ` ${input.role} `),
        channel.active_input === input.id ? pill("on air", "ok") : null, " ",
        input.state === "connected" ? pill("connected", "ok") : pill("waiting", "muted"), " ",
        healthPill(input)))),
      el("div", {}, "Destinations live: ", el("strong", { "data-testid": `overview-outputs-${channel.id}` }, `${liveOutputs}/${outputs.length}`)));
  }));
}

// ---- channel page: dashboard --------------------------------------------------------------

function renderChannelPage() {
  const channel = currentChannel();
  $("#channel-title").textContent = state.channel ? `Channel ${state.channel}` : "No channel";
  if (!channel) {
    if (state.haveStatus && state.channel) {
      notify(`There is no channel “${state.channel}” (any more).`, "warn");
      state.channel = null;
      location.replace("#/");
    }
    return;
  }
  // #/channel without an id showed the first channel: say which in the URL, for a reload.
  if (!parseRoute().channel) history.replaceState(null, "", `#/channel/${encodeURIComponent(channel.id)}`);
  renderDashboard(channel);
  renderDestinations(channel);
  renderIngest(channel);
  startPlayer(channel.id);
}

function healthPill(input) {
  const health = input.health || { state: "unknown", reasons: [] };
  const tone = { healthy: "ok", degraded: "warn", lost: "bad" }[health.state] || "muted";
  // A detail ("connected, no data for 12 s") says more than the reason's name.
  const why = health.detail || (health.reasons || []).join(", ").replaceAll("_", " ");
  return [pill(health.state || "unknown", tone), why ? el("span", { class: "reasons" }, why) : null];
}

// "h264 1280×720 25 fps progressive", from the SPS whatever the input's kind.
function videoFormat(video) {
  if (!video) return "video: not known yet";
  const rate = video.frame_rate ? ` ${Number(video.frame_rate.toFixed(3))} fps` : "";
  return `${video.codec} ${video.width}×${video.height}${rate} ${video.interlaced ? "interlaced" : "progressive"}`;
}

// The last 5 minutes decide the colour, so a cell clears once the stream is clean again; the
// totals since start stay in the tooltip.
function tr101290(input) {
  const name = (indicator) => indicator.replaceAll("_", " ");
  const totals = Object.entries(input.tr101290 || {}).filter(([, n]) => n > 0);
  const title = totals.length
    ? `Since start: ${totals.map(([indicator, n]) => `${name(indicator)} ${n}`).join(", ")}`
    : "No errors since start";
  const testid = `tr101290-${input.id}`;
  const recent = Object.entries(input.tr101290_last_5min || {}).filter(([, n]) => n > 0);
  if (!recent.length) {
    const since = totals.reduce((sum, [, n]) => sum + n, 0);
    return el("span", { class: "muted", title, "data-testid": testid }, since ? `none in 5 min (${since} since start)` : "no errors");
  }
  return el("span", { class: "error", title, "data-testid": testid },
    `${recent.map(([indicator, n]) => `${name(indicator)} ${n}`).join(", ")} in 5 min`);
}

function renderDashboard(channel) {
  const connected = channel.inputs.some((i) => i.state === "connected");
  $("#waiting").hidden = connected || Boolean(channel.active_input);
  $("#on-air").textContent = channel.active_input || "nothing (waiting for signal)";
  $("#forced").hidden = !channel.forced_input;

  // Switching is an admin's: a user gets no buttons at all, not disabled ones.
  const switchButtons = $("#switch-buttons");
  // Forcing needs something to choose between.
  if (can("admin") && channel.inputs.length > 1) {
    const buttons = channel.inputs.map((input) => {
      const sameRole = channel.inputs.filter((i) => i.role === input.role).length > 1;
      const label = `Force ${input.role}${sameRole ? ` (${input.id})` : ""}`;
      return el("button", {
        type: "button",
        class: channel.forced_input === input.id ? "active" : "",
        "data-testid": `force-${input.id}`,
        onclick: () => forceInput(channel.id, input),
      }, label);
    });
    buttons.push(el("button", { type: "button", class: channel.forced_input ? "" : "active", "data-testid": "force-auto", onclick: () => switchTo(channel.id, "auto") }, "Auto"));
    switchButtons.replaceChildren(...buttons);
    switchButtons.hidden = false;
  } else {
    switchButtons.replaceChildren();
    switchButtons.hidden = true;
  }

  // SRT link figures and TR 101 290 exist only for SRT (MPEG-TS) inputs: no columns of dashes
  // on a channel that has none, "n/a" where a row's kind has none.
  $("#inputs").classList.toggle("no-srt", !channel.inputs.some((i) => i.type === "srt"));
  $("#inputs tbody").replaceChildren(...channel.inputs.map((input) => {
    const key = `${channel.id}/${input.id}`;
    const history = state.bitrates.get(key) || [];
    const srt = input.srt || {};
    const sent = (srt.packets_received || 0) + (srt.packets_lost || 0);
    const loss = sent ? `${((100 * (srt.packets_lost || 0)) / sent).toFixed(2)} %` : "—";
    const onAir = channel.active_input === input.id;
    return el("tr", { "data-testid": `input-${input.id}` },
      el("td", {}, el("strong", {}, input.id), " ", onAir ? pill("on air", "ok") : null, el("div", { class: "muted" }, input.listen ? `${input.type} ${input.listen}` : input.type),
        el("div", { class: "muted", "data-testid": `video-${input.id}` }, videoFormat(input.video))),
      el("td", {}, input.role),
      el("td", {}, input.state === "connected" ? pill("connected", "ok") : pill("waiting", "muted"), input.peer ? el("div", { class: "muted" }, input.peer) : null,
        input.last_error ? el("div", { class: "error", "data-testid": `input-error-${input.id}` }, input.last_error) : null),
      el("td", {}, healthPill(input)),
      el("td", {}, formatBitrate(input.bitrate_bps), sparkline(history)),
      el("td", { class: "col-srt" }, input.type !== "srt" ? el("span", { class: "muted" }, "n/a") : input.state === "connected" ? `${(srt.rtt_ms || 0).toFixed(1)} ms / ${loss}` : "—"),
      el("td", { class: "col-srt" }, input.type === "srt" ? tr101290(input) : el("span", { class: "muted" }, "n/a")));
  }));

  const switches = [...channel.switches].reverse();
  $("#switches").replaceChildren(...(switches.length ? switches.map((s) => el("li", {},
    el("strong", {}, formatTime(s.at)), ` ${s.from || "—"} → ${s.to}: ${s.reason.replaceAll("_", " ")}`,
    el("span", { class: "muted" }, ` (gap ${s.gap_ms} ms${s.detection_ms != null ? `, detected in ${s.detection_ms} ms` : ""})`))) : [el("li", { class: "muted" }, "none yet")]));
}

function sparkline(values) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 60 20");
  svg.setAttribute("preserveAspectRatio", "none");
  const max = Math.max(1, ...values);
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", values.map((v, i) => `${i + 60 - values.length},${(20 - (v / max) * 18 - 1).toFixed(1)}`).join(" "));
  svg.append(line);
  return svg;
}

async function forceInput(channel, input) {
  const ok = await ask(`Force ${input.id} (${input.role}) on air in ${channel}? It stays on air while it has a signal, even a degraded one, until you press Auto.`, { confirm: `Force ${input.id} on air`, danger: true });
  if (ok) await switchTo(channel, input.id);
}

async function switchTo(channel, input) {
  try {
    await api("POST", `/api/v1/channels/${path(channel)}/switch`, { input });
  } catch (error) {
    notify(error.message, "bad");
  }
}

// ---- channel page: destinations -----------------------------------------------------------

function outputBitrate(channel, output) {
  const key = `${channel.id}/${output.id}`;
  const now = performance.now();
  const last = state.outputRates.get(key);
  let bps = last ? last.bps : 0;
  if (last && now - last.at >= 900) {
    bps = Math.max(0, ((output.bytes_total - last.bytes) * 8 * 1000) / (now - last.at));
  }
  if (!last || now - last.at >= 900) state.outputRates.set(key, { bytes: output.bytes_total, at: now, bps });
  return output.state === "live" ? bps : 0;
}

function outputStatePill(output) {
  const tone = { live: "ok", connecting: "warn", retrying: "warn", failed: "bad", idle: "muted" }[output.state] || "muted";
  return pill(output.state, tone);
}

function renderDestinations(channel) {
  $("#outputs tbody").replaceChildren(...channel.outputs.map((output) => {
    const destination = output.destination;
    const controls = destination ? [
      el("button", { type: "button", "data-testid": `start-${output.id}`, disabled: output.state === "live" || output.state === "connecting", onclick: () => control(channel.id, output.id, "start") }, "Start"),
      el("button", { type: "button", "data-testid": `stop-${output.id}`, disabled: output.state === "idle" || output.state === "failed", onclick: () => control(channel.id, output.id, "stop") }, "Stop"),
      el("button", { type: "button", "data-testid": `edit-${output.id}`, onclick: () => editDestination(output) }, "Edit"),
      el("button", { type: "button", "data-testid": `remove-${output.id}`, onclick: () => removeDestination(channel.id, output.id) }, "Remove"),
    ] : [el("span", { class: "muted" }, "always on")];
    const problem = [
      output.last_error ? el("div", { class: "error" }, output.last_error) : null,
      output.next_retry_seconds != null ? el("div", { class: "muted" }, `retry in ${output.next_retry_seconds.toFixed(1)} s`) : null,
      ...(output.warnings || []).map((w) => el("div", { class: "reasons" }, w)),
    ];
    return el("tr", { "data-testid": `output-${output.id}` },
      el("td", {}, el("strong", {}, output.id), el("div", { class: "muted" }, destination ? destination.preset : `${output.type} ${output.mode}`)),
      el("td", {}, el("code", {}, output.address), destination && destination.stream_key_set ? el("div", { class: "muted" }, "stream key saved ••••••") : null),
      el("td", { "data-testid": `state-${output.id}` }, outputStatePill(output), output.peers.length && !destination ? el("div", { class: "muted" }, `${output.peers.length} receiver(s)`) : null),
      el("td", {}, formatBitrate(outputBitrate(channel, output))),
      el("td", {}, problem.some(Boolean) ? problem : el("span", { class: "muted" }, "—")),
      el("td", {}, el("div", { class: "buttons" }, controls)));
  }));
}

async function control(channel, output, action) {
  try {
    await api("POST", `/api/v1/channels/${path(channel)}/outputs/${path(output)}/${action}`, {});
  } catch (error) {
    notify(error.message, "bad");
  }
}

async function controlAll(start) {
  const channel = currentChannel();
  if (!channel) return;
  if (!start) {
    const liveCount = channel.outputs.filter((o) => o.destination && o.state !== "idle").length;
    const ok = await ask(`Stop all destinations of ${channel.id}? ${liveCount} running now go off air on their platforms.`, { confirm: "Stop all", danger: true });
    if (!ok) return;
  }
  try {
    await api("POST", `/api/v1/channels/${path(channel.id)}/outputs/${start ? "start-all" : "stop-all"}`, {});
  } catch (error) {
    notify(error.message, "bad");
  }
}

async function removeDestination(channel, output) {
  if (!(await ask(`Remove destination ${output}? It stops at once.`, { confirm: `Remove ${output}`, danger: true }))) return;
  try {
    await api("DELETE", `/api/v1/channels/${path(channel)}/outputs/${path(output)}`, {});
  } catch (error) {
    notify(error.message, "bad");
  }
}

function showPresetFields() {
  const form = $("#destination-form");
  const preset = form.preset.value;
  form.querySelector('[data-for="region"]').hidden = preset !== "x";
  form.querySelector('[data-for="backup"]').hidden = preset !== "youtube";
  form.url.placeholder = {
    youtube: "rtmps://a.rtmps.youtube.com/live2 (default)",
    x: "rtmps://<region>.pscp.tv:443/x (or give the region)",
    linkedin: "the rtmps:// URL LinkedIn gives you",
    custom: "rtmp://server/app or rtmps://server/app",
  }[preset];
}

function resetForm() {
  const form = $("#destination-form");
  form.reset();
  state.editing = null;
  form.elements.output_id.readOnly = false;
  form.stream_key.placeholder = "";
  $("#form-title").textContent = "Add a destination";
  $("#form-cancel").hidden = true;
  showPresetFields();
}

function editDestination(output) {
  const form = $("#destination-form");
  const d = output.destination;
  state.editing = output.id;
  form.elements.output_id.value = output.id;
  form.elements.output_id.readOnly = true;
  form.preset.value = d.preset;
  form.url.value = d.url || "";
  form.region.value = d.region || "";
  form.backup_ingest.checked = d.backup_ingest;
  form.autostart.checked = d.autostart;
  form.stream_key.value = "";
  form.stream_key.placeholder = "saved; leave empty to keep it";
  $("#form-title").textContent = `Edit ${output.id}`;
  $("#form-cancel").hidden = false;
  $("#form-message").textContent = "";
  showPresetFields();
  form.scrollIntoView({ behavior: "smooth", block: "center" });
}

async function saveDestination(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const message = $("#form-message");
  const channel = state.channel;
  const spec = { preset: form.preset.value, autostart: form.autostart.checked };
  if (form.url.value.trim()) spec.url = form.url.value.trim();
  if (spec.preset === "x" && form.region.value.trim()) spec.region = form.region.value.trim();
  if (spec.preset === "youtube" && form.backup_ingest.checked) spec.backup_ingest = true;
  if (form.stream_key.value) spec.stream_key = form.stream_key.value;
  // The key leaves the page as soon as it is on its way, whatever the answer.
  form.stream_key.value = "";
  const id = form.elements.output_id.value.trim();
  try {
    if (state.editing) {
      await api("PUT", `/api/v1/channels/${path(channel)}/outputs/${path(id)}`, spec);
    } else {
      await api("POST", `/api/v1/channels/${path(channel)}/outputs`, { id, ...spec });
    }
    resetForm();
    message.textContent = `Saved ${id}.`;
  } catch (error) {
    message.textContent = [error.message, ...error.problems.filter((p) => !error.message.includes(p))].join(" ");
  }
}

// ---- channel page: ingest help ------------------------------------------------------------

function boxHost() {
  const here = location.hostname;
  const local = ["localhost", "127.0.0.1", "::1", "[::1]"].includes(here);
  return local && state.system.addresses && state.system.addresses.length ? state.system.addresses[0] : here;
}

function renderIngest(channel) {
  const host = boxHost();
  const blocks = channel.inputs.filter((input) => input.listen).map((input) => {
    const port = String(input.listen).split(":").pop();
    const ingest = input.ingest || {};
    if (input.type === "rtmp") {
      return el("div", { class: "ingest-block", "data-testid": `ingest-${input.id}` },
        el("h3", {}, `OBS → ${input.id} (${input.role})`),
        el("p", { class: "muted" }, "Settings → Stream: Service “Custom…”, then:"),
        copyRow("Server", `rtmp://${host}:${port}/${ingest.rtmp_app || "live"}`),
        el("div", { class: "copy-row" }, el("span", { class: "muted" }, "Stream key:"), el("span", {},
          can("admin") ? `shown once when “${input.id}” was added; make a new one on the Sources page if it is lost` : `the stream key of input “${input.id}” (not shown here; an admin has it)`)),
        el("p", { class: "muted" }, "Output: x264 or hardware H.264, keyframe interval 1–2 s, AAC 48 kHz."));
    }
    // ffmpeg takes the SRT latency in microseconds, srt-live-transmit (libsrt's URI) in
    // milliseconds: one shared URL would give srt-live-transmit a 120 s latency.
    const latencyMs = ingest.latency_ms || 120;
    const streamId = ingest.stream_id ? `&streamid=${encodeURIComponent(ingest.stream_id)}` : "";
    const ffmpegUrl = `srt://${host}:${port}?mode=caller&latency=${latencyMs * 1000}&pkt_size=1316${streamId}`;
    const sltUrl = `srt://${host}:${port}?mode=caller&latency=${latencyMs}${streamId}`;
    return el("div", { class: "ingest-block", "data-testid": `ingest-${input.id}` },
      el("h3", {}, `Videon (SRT caller) → ${input.id} (${input.role})`),
      copyRow("Host", host),
      copyRow("Port", port),
      copyRow("Latency (ms)", String(ingest.latency_ms || 120)),
      el("div", { class: "copy-row" }, el("span", { class: "muted" }, "Passphrase:"), el("span", {}, ingest.passphrase_set ? "set (not shown here); use the same on the encoder" : "none")),
      ingest.stream_id ? copyRow("Stream ID", ingest.stream_id) : el("div", { class: "copy-row" }, el("span", { class: "muted" }, "Stream ID:"), el("span", {}, "none")),
      copyRow("ffmpeg URL (latency in µs)", ffmpegUrl),
      copyRow("srt-live-transmit URL (latency in ms)", sltUrl));
  });
  if (!channel.inputs.some((i) => i.type === "rtmp")) {
    blocks.push(el("div", { class: "ingest-block" },
      el("h3", {}, "OBS"),
      can("admin")
        ? el("p", { class: "muted" }, "This channel has no RTMP input yet. Add one on the Sources page (type “rtmp”): lunora makes its stream key and shows the OBS settings once.")
        : el("p", { class: "muted" }, "This channel has no RTMP input yet; an admin can add one for OBS.")));
  }
  $("#ingest-body").replaceChildren(...blocks);
}

// ---- channel page: player -----------------------------------------------------------------

// One HLS player with its playback facts (state, behind live, bitrate, resolution, dropped
// frames), found by id prefix: the box's own preview ("") and the cloud preview ("cloud-").
class Player {
  constructor(prefix) {
    this.prefix = prefix;
    this.hls = null;
    this.native = false;
    this.url = null;
    this.retry = null;
    this.lastTime = 0;
    this.lastProgress = performance.now();
    this.bitrate = 0;
  }

  node(name) {
    return $(`#${this.prefix}${name}`);
  }

  setState(text) {
    this.node("playback-state").textContent = text;
  }

  // Plays `url` until stopped; after a fatal error it starts over in 2 s while
  // `stillWanted()` says the page still shows it.
  start(url, stillWanted) {
    if (this.url === url && (this.hls || this.native || this.retry)) return;
    this.stop();
    this.url = url;
    const video = this.node("video");
    if (window.Hls && window.Hls.isSupported()) {
      const hls = new window.Hls({ liveSyncDurationCount: 3, manifestLoadingMaxRetry: Infinity, levelLoadingMaxRetry: Infinity, fragLoadingMaxRetry: 6 });
      hls.on(window.Hls.Events.FRAG_LOADED, (_, data) => {
        const bytes = (data.frag.stats && data.frag.stats.loaded) || (data.payload && data.payload.byteLength) || 0;
        if (bytes && data.frag.duration > 0) this.bitrate = (bytes * 8) / data.frag.duration;
      });
      hls.on(window.Hls.Events.ERROR, (_, data) => {
        if (!data.fatal) return;
        // Most often: no segments yet (waiting for signal). Start over in a moment.
        this.setState(`waiting for the preview (${data.details})`);
        this.stop();
        this.url = url;
        this.retry = setTimeout(() => {
          this.retry = null;
          if (stillWanted()) this.start(url, stillWanted);
        }, 2000);
      });
      hls.loadSource(url);
      hls.attachMedia(video);
      this.hls = hls;
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = url;
      this.native = true;
    } else {
      this.setState("this browser cannot play HLS");
      return;
    }
    video.play().catch(() => { /* autoplay waits for the first segment */ });
  }

  stop() {
    clearTimeout(this.retry);
    this.retry = null;
    if (this.hls) this.hls.destroy();
    if (this.native) {
      const video = this.node("video");
      video.removeAttribute("src");
      video.load();
    }
    this.hls = null;
    this.native = false;
    this.url = null;
  }

  update() {
    const video = this.node("video");
    const now = performance.now();
    if (video.currentTime !== this.lastTime) {
      this.lastTime = video.currentTime;
      this.lastProgress = now;
    }
    if (this.hls || this.native) {
      if (video.paused) this.setState(video.currentTime > 0 ? "paused" : "waiting for the preview");
      else if (now - this.lastProgress > 3000) this.setState("stalled");
      else if (video.readyState < 3) this.setState("buffering");
      else this.setState("playing");
    }
    const latency = this.hls && Number.isFinite(this.hls.latency) ? this.hls.latency : null;
    this.node("playback-latency").textContent = latency != null && latency > 0 ? `${latency.toFixed(1)} s` : "—";
    this.node("playback-bitrate").textContent = formatBitrate(this.bitrate);
    this.node("playback-resolution").textContent = video.videoWidth ? `${video.videoWidth}×${video.videoHeight}` : "—";
    const quality = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
    this.node("playback-dropped").textContent = quality ? `${quality.droppedVideoFrames} of ${quality.totalVideoFrames}` : "—";
    video.dataset.currentTime = video.currentTime.toFixed(2);
  }
}

const preview = new Player("");
const cloudPreview = new Player("cloud-");

function startPlayer(channel) {
  preview.start(`/hls/${encodeURIComponent(channel)}/index.m3u8`, () => state.page === "channel" && state.channel === channel);
}

// Leaving the channel page stops the preview: lunora keeps HLS segments only while watched.
function stopPlayer() {
  preview.stop();
}

// ---- cloud: MediaLive and the cloud preview ------------------------------------------------
// GET …/medialive reads AWS each time, so the page polls it every 10 s while shown, not on
// every status event.

const cloud = { channel: null, view: null, timer: null, filled: null };

// The form shows the setup as provisioned (once per change, so typing is not overwritten by
// the next poll): provisioning again then changes only what the superadmin changed.
function fillCloudForm(setup) {
  const key = JSON.stringify(setup || null);
  if (cloud.filled === key) return;
  cloud.filled = key;
  const form = $("#cloud-form");
  if (!setup) {
    form.reset();
    return;
  }
  for (const name of ["mode", "input_type", "preset", "channel_class"]) {
    if (setup[name] !== undefined) form.elements[name].value = setup[name];
  }
  form.elements.allowed_cidrs.value = (setup.allowed_cidrs || []).join(", ");
  form.elements.stop_after_idle_min.value = setup.stop_after_idle_min ?? "";
}

function formatDuration(seconds) {
  if (!Number.isFinite(seconds)) return "—";
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  return h ? `${h} h ${m} min` : m ? `${m} min ${Math.floor(seconds % 60)} s` : `${Math.floor(seconds)} s`;
}

function leaveCloud() {
  clearTimeout(cloud.timer);
  cloud.timer = null;
  cloud.channel = null;
  cloudPreview.stop();
}

async function loadCloud() {
  clearTimeout(cloud.timer);
  const channel = state.channel;
  if (state.page !== "cloud" || !channel) return;
  $("#cloud-title").textContent = `MediaLive — channel ${channel}`;
  if (cloud.channel !== channel) {
    cloud.channel = channel;
    cloud.view = null;
    cloud.filled = undefined;
    cloudPreview.stop();
  }
  let view = null;
  let message = null;
  try {
    view = await api("GET", `/api/v1/channels/${path(channel)}/medialive`);
  } catch (error) {
    if (error.status === 404) message = `Nothing is provisioned in AWS for channel ${channel} yet.`;
    else message = error.message;
  }
  if (state.page !== "cloud" || state.channel !== channel) return;
  cloud.view = view;
  renderCloud(view, message);
  // A reload after an action may overlap the timer's: one timer, whichever came last.
  clearTimeout(cloud.timer);
  cloud.timer = setTimeout(loadCloud, 10000);
}

function renderCloud(view, message) {
  const banner = $("#cloud-message");
  banner.hidden = !message;
  banner.textContent = message || "";
  $("#cloud-facts").hidden = !view;
  const superadmin = can("superadmin");
  $("#cloud-actions").hidden = !view || !superadmin;
  // Without [aws] nothing can be provisioned: the message says so, the form stays away.
  const unconfigured = Boolean(message) && message.includes("[aws]");
  $("#cloud-form").hidden = !superadmin || unconfigured;
  $("#cloud-form-title").textContent = view ? "Provision again (adopts and repairs; changes what differs)" : "Provision";
  fillCloudForm(view && view.setup);
  if (!view) {
    cloudPreview.stop();
    cloudPreview.setState("no playback URL yet");
    return;
  }
  const running = view.state === "RUNNING";
  $("#cloud-state").replaceChildren(pill(view.state || "no channel", running ? "ok" : view.state === "IDLE" ? "muted" : "warn"));
  $("#cloud-running").textContent = running && view.running_since
    ? `${formatDuration(view.running_for_seconds)} (since ${formatDate(view.running_since)})`
    : "not running";
  const idle = running && !view.feed_live && Number.isFinite(view.idle_seconds)
    ? ` — nothing sent for ${formatDuration(view.idle_seconds)}${view.setup && view.setup.stop_after_idle_min ? `, stops after ${view.setup.stop_after_idle_min} min` : ""}`
    : "";
  $("#cloud-feed").replaceChildren(view.feed_live ? pill("live", "ok") : pill("not sending", running ? "bad" : "muted"), idle);
  $("#cloud-mode").textContent = view.setup ? `${view.setup.mode}, ${view.setup.input_type}, ${view.setup.preset}, ${view.setup.channel_class}` : "—";
  $("#cloud-inputs").replaceChildren(...(view.inputs || []).map((input) =>
    el("div", {}, el("strong", {}, input.role), ` ${input.input_type} `, el("span", { class: "muted" }, (input.urls || []).join(", ") || "no address yet"))));
  $("#cloud-channel-id").textContent = view.channel_id
    ? `${view.channel_id}${(view.active_inputs || []).length ? ` — on ${view.active_inputs.join(" / ")}` : ""}`
    : "—";
  $("#cloud-playback-url").textContent = view.playback_url || "none yet";
  $("#cloud-polled").textContent = view.poll_error
    ? `failed: ${view.poll_error}`
    : view.polled_at ? formatTime(view.polled_at) : "—";
  $("#cloud-start").disabled = running || view.state === "STARTING";
  $("#cloud-stop").disabled = !running;
  if (view.playback_url) {
    const channel = cloud.channel;
    cloudPreview.start(view.playback_url, () => state.page === "cloud" && cloud.channel === channel);
  } else {
    cloudPreview.stop();
    cloudPreview.setState("no playback URL yet");
  }
}

async function provisionCloud(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const message = form.querySelector(".form-message");
  const channel = cloud.channel;
  // The rest of the setup (thresholds, latency, failover conditions) stays as provisioned.
  const body = {
    ...((cloud.view && cloud.view.setup) || {}),
    mode: form.elements.mode.value,
    input_type: form.elements.input_type.value,
    preset: form.elements.preset.value,
    channel_class: form.elements.channel_class.value,
    allowed_cidrs: form.elements.allowed_cidrs.value.split(/[\s,]+/).filter(Boolean),
  };
  const idle = form.elements.stop_after_idle_min.value;
  if (idle) body.stop_after_idle_min = Number(idle);
  else delete body.stop_after_idle_min;
  message.className = "form-message";
  message.textContent = "Provisioning in AWS…";
  try {
    await api("PUT", `/api/v1/channels/${path(channel)}/medialive`, body);
    message.textContent = "Provisioned; the box feeds it.";
    await loadCloud();
  } catch (error) {
    message.className = "form-message error";
    message.textContent = [error.message, ...error.problems.filter((p) => !error.message.includes(p))].join(" ");
  }
}

async function cloudLifecycle(action) {
  const channel = cloud.channel;
  if (action === "start" && !(await ask(`Start the MediaLive channel of ${channel}? It is billed by the hour while running.`, { confirm: "Start" }))) return;
  try {
    const answer = await api("POST", `/api/v1/channels/${path(channel)}/medialive/${action}`, {});
    notify(`MediaLive channel ${answer.state.toLowerCase()}.`);
    await loadCloud();
  } catch (error) {
    notify(error.message, "bad");
  }
}

async function teardownCloud() {
  const channel = cloud.channel;
  if (!(await ask(`Tear down everything provisioned in AWS for ${channel} (stopping the MediaLive channel first)? The playback URL stops working.`, { confirm: "Tear down", danger: true }))) return;
  try {
    await api("DELETE", `/api/v1/channels/${path(channel)}/medialive`, {});
    notify("Torn down in AWS.");
    await loadCloud();
  } catch (error) {
    notify(error.message, "bad");
  }
}

// ---- JSON Schema → form -------------------------------------------------------------------
// The input form knows no input type: it is built from whatever `oneOf` variants
// GET /api/v1/schema/inputs lists, so a type added to lunora later shows up by itself.

function pointer(root, ref) {
  if (typeof ref !== "string" || !ref.startsWith("#")) return {};
  let node = root;
  for (const raw of ref.slice(1).split("/").filter(Boolean)) {
    const key = decodeURIComponent(raw).replaceAll("~1", "/").replaceAll("~0", "~");
    node = node && typeof node === "object" ? node[key] : undefined;
  }
  return node && typeof node === "object" ? node : {};
}

// b's keys win, except properties and required, which add up.
function mergeSchemas(a, b) {
  const merged = { ...a, ...b };
  if (a.properties || b.properties) merged.properties = { ...(a.properties || {}), ...(b.properties || {}) };
  if (a.required || b.required) merged.required = [...new Set([...(a.required || []), ...(b.required || [])])];
  return merged;
}

// Follows $ref (the referring schema's own keys win: title, description, default) and folds
// allOf into one schema.
function deref(schema, root, depth = 0) {
  if (!schema || typeof schema !== "object" || depth > 32) return {};
  let node = schema;
  if (typeof node.$ref === "string") {
    const { $ref, ...rest } = node;
    node = mergeSchemas(deref(pointer(root, $ref), root, depth + 1), rest);
  }
  if (Array.isArray(node.allOf)) {
    const { allOf, ...rest } = node;
    node = allOf.reduce((acc, part) => mergeSchemas(acc, deref(part, root, depth + 1)), {});
    node = mergeSchemas(node, rest);
  }
  return node;
}

const constOf = (s) => ("const" in s ? s.const : Array.isArray(s.enum) && s.enum.length === 1 ? s.enum[0] : undefined);

// One property as a form field: { name, kind: text|secret|number|checkbox|select|json, ... }.
function fieldSpec(name, raw, root, required) {
  let s = deref(raw, root);
  let options = null;
  // Option<T> is anyOf/oneOf [T, null]; an enum with documented values is a oneOf of consts.
  for (const key of ["anyOf", "oneOf"]) {
    if (!Array.isArray(s[key])) continue;
    const parts = s[key].map((p) => deref(p, root));
    const values = parts.filter((p) => p.type !== "null" && !(Array.isArray(p.type) && p.type.length === 1 && p.type[0] === "null"));
    const { [key]: _, ...outer } = s;
    if (values.length && values.every((p) => constOf(p) !== undefined)) {
      options = values.map((p) => ({ value: constOf(p), label: String(constOf(p)), help: p.description || p.title || "" }));
      s = outer;
    } else if (values.length === 1) {
      s = mergeSchemas(values[0], outer);
    }
  }
  const types = Array.isArray(s.type) ? s.type.filter((t) => t !== "null") : [s.type];
  const type = types[0];
  if (!options && Array.isArray(s.enum)) options = s.enum.filter((v) => v !== null).map((v) => ({ value: v, label: String(v), help: "" }));
  const secret = Boolean(s.writeOnly || raw.writeOnly);
  let kind = "text";
  if (options) kind = "select";
  else if (type === "boolean") kind = "checkbox";
  else if (type === "integer" || type === "number") kind = "number";
  else if (type === "object" || type === "array") kind = "json";
  else if (secret) kind = "secret";
  const min = s.minimum ?? (s.exclusiveMinimum !== undefined ? s.exclusiveMinimum + (type === "integer" ? 1 : 0) : undefined);
  const max = s.maximum ?? (s.exclusiveMaximum !== undefined ? s.exclusiveMaximum - (type === "integer" ? 1 : 0) : undefined);
  return {
    name,
    kind,
    integer: type === "integer",
    secret,
    required,
    title: s.title || name,
    description: s.description || "",
    default: s.default,
    min,
    max,
    minLength: s.minLength,
    maxLength: s.maxLength,
    options,
  };
}

function schemaVariants(root) {
  const top = deref(root, root);
  const list = top.oneOf || top.anyOf || (top.properties ? [top] : []);
  // Properties beside the oneOf (e.g. a flattened id and role) belong to every variant.
  const common = { properties: top.properties || {}, required: top.required || [] };
  return list.map((raw) => {
    const variant = mergeSchemas(common, deref(raw, root));
    const props = variant.properties || {};
    const kind = constOf(deref(props.type || {}, root));
    if (kind === undefined) return null;
    const required = new Set(variant.required || []);
    const fields = Object.entries(props)
      .filter(([name]) => name !== "type")
      .map(([name, prop]) => fieldSpec(name, prop, root, required.has(name)));
    // Every input has an id (its URL names it); a schema of the type's own settings alone
    // would leave it out.
    if (!("id" in props)) fields.push(fieldSpec("id", { type: "string", title: "Input id" }, root, true));
    // Required fields first (id before the rest), otherwise in the schema's order.
    fields.sort((a, b) => (b.name === "id") - (a.name === "id") || b.required - a.required);
    return { kind: String(kind), title: variant.title || "", description: variant.description || "", fields };
  }).filter(Boolean);
}

let inputSchemaCache = null;
async function inputVariants() {
  if (!inputSchemaCache) {
    const schema = await api("GET", "/api/v1/schema/inputs");
    inputSchemaCache = schemaVariants(schema || {});
  }
  return inputSchemaCache;
}

// A field's control, filled from `values` (the saved config when editing) or the default.
function fieldControl(spec, values, editing) {
  const testid = `field-${spec.name}`;
  const saved = values && spec.name in values ? values[spec.name] : undefined;
  const start = saved !== undefined ? saved : spec.default;
  let control;
  if (spec.kind === "select") {
    const choices = spec.options.map((o) => el("option", { value: String(o.value), title: o.help || null }, o.help ? `${o.label} — ${o.help}` : o.label));
    const noChoice = !spec.required && (start === undefined || start === null) ? [el("option", { value: "" }, "—")] : [];
    control = el("select", { "data-testid": testid, name: spec.name }, noChoice, choices);
    const picked = spec.options.find((o) => o.value === start);
    control.value = picked ? String(picked.value) : noChoice.length ? "" : String(spec.options[0].value);
  } else if (spec.kind === "checkbox") {
    control = el("input", { type: "checkbox", "data-testid": testid, name: spec.name });
    control.checked = Boolean(start);
  } else if (spec.kind === "number") {
    control = el("input", { type: "number", step: spec.integer ? "1" : "any", min: spec.min, max: spec.max, "data-testid": testid, name: spec.name });
    control.value = start === undefined || start === null ? "" : String(start);
  } else if (spec.kind === "json") {
    control = el("textarea", { rows: "2", spellcheck: "false", placeholder: "JSON", "data-testid": testid, name: spec.name });
    control.value = start === undefined || start === null ? "" : JSON.stringify(start);
  } else {
    const isSet = values && values[`${spec.name}_set`] === true;
    control = el("input", {
      type: spec.secret ? "password" : "text",
      autocomplete: spec.secret ? "new-password" : "off",
      spellcheck: "false",
      minlength: spec.minLength,
      maxlength: spec.maxLength,
      placeholder: spec.secret ? (isSet ? "saved; leave empty to keep it" : editing ? "none set; leave empty for none" : "") : (spec.default !== undefined ? String(spec.default) : ""),
      "data-testid": testid,
      name: spec.name,
    });
    // A secret is never filled in: the server sends only whether one is set.
    control.value = spec.secret || start === undefined || start === null ? "" : String(start);
  }
  control.required = spec.required && spec.kind !== "checkbox" && !(spec.secret && editing);
  if (editing && spec.name === "id") control.readOnly = true;
  const title = el("span", {}, spec.title, spec.required ? el("span", { class: "required", title: "required" }, " *") : null);
  const help = spec.description ? el("small", { class: "help" }, spec.description) : null;
  const label = spec.kind === "checkbox"
    ? el("label", { class: "check", "data-field": spec.name }, control, title, help)
    : el("label", { "data-field": spec.name }, title, control, help);
  return { spec, control, label };
}

// Option values are strings in the DOM; the schema's may be numbers or booleans.
function optionValue(spec, text) {
  const option = spec.options.find((o) => String(o.value) === text);
  return option ? option.value : text;
}

// The body: in a new input only what the user filled (a value left at its default is the
// server's default anyway); in an edit every setting, secrets only when retyped.
function collectFields(fields, editing) {
  const body = {};
  const problems = [];
  for (const { spec, control } of fields) {
    const unchanged = (value) => !editing && !spec.required && spec.default !== undefined && value === spec.default;
    let value;
    if (spec.kind === "checkbox") {
      value = control.checked;
      if (!editing && !spec.required && value === Boolean(spec.default)) continue;
    } else if (spec.kind === "select") {
      if (control.value === "") continue;
      value = optionValue(spec, control.value);
      if (unchanged(value)) continue;
    } else if (spec.kind === "number") {
      const raw = control.value.trim();
      if (raw === "") {
        if (control.validity.badInput) problems.push(`${spec.title}: not a number`);
        continue;
      }
      value = Number(raw);
      if (!Number.isFinite(value) || (spec.integer && !Number.isInteger(value))) {
        problems.push(`${spec.title}: needs a ${spec.integer ? "whole " : ""}number`);
        continue;
      }
      if (unchanged(value)) continue;
    } else if (spec.kind === "json") {
      const raw = control.value.trim();
      if (raw === "") continue;
      try {
        value = JSON.parse(raw);
      } catch {
        problems.push(`${spec.title}: not valid JSON`);
        continue;
      }
    } else {
      value = spec.secret ? control.value : control.value.trim();
      if (value === "" || unchanged(value)) continue;
    }
    body[spec.name] = value;
  }
  for (const { spec } of fields) {
    if (spec.required && !(spec.name in body) && !(spec.secret && editing)) problems.push(`${spec.title}: required`);
  }
  return { body, problems };
}

// ---- sources ------------------------------------------------------------------------------

const sources = { cards: new Map() };   // channel id -> { card, info, tbody, slot, key }
const editor = { channel: null, input: null, variants: [], fields: [] };

function inputConfig(input) {
  if (input.config && typeof input.config === "object") return input.config;
  // Before the server sent "config": what the status tells.
  const ingest = input.ingest || {};
  const config = { id: input.id, type: input.type, role: input.role, listen: input.listen };
  if (ingest.latency_ms !== undefined) config.latency_ms = ingest.latency_ms;
  if (input.type === "srt") config.passphrase_set = Boolean(ingest.passphrase_set);
  if (ingest.stream_id) config.stream_id = ingest.stream_id;
  if (input.type === "rtmp") config.stream_key_set = Boolean(ingest.stream_key_set);
  return config;
}

function configList(config) {
  const items = Object.entries(config).filter(([key]) => key !== "id").map(([key, value]) => {
    if (key.endsWith("_set") && typeof value === "boolean") return [key.slice(0, -4), value ? "set (not shown)" : "none"];
    if (value === null || value === undefined) return [key, "—"];
    return [key, typeof value === "object" ? JSON.stringify(value) : String(value)];
  });
  return el("dl", { class: "config" }, items.flatMap(([key, value]) => [el("dt", {}, key), el("dd", {}, value)]));
}

function sourceCard(id) {
  const info = el("span", { class: "muted" });
  const tbody = el("tbody");
  const slot = el("div", { class: "editor-slot" });
  const card = el("div", { class: "source-channel", "data-testid": `sources-channel-${id}` },
    el("div", { class: "source-head" },
      el("h3", {}, `Channel ${id}`), info,
      el("div", { class: "buttons" },
        el("button", { type: "button", "data-testid": `add-input-${id}`, onclick: () => openEditor(id, null) }, "Add input"),
        el("button", { type: "button", class: "danger", "data-testid": `remove-channel-${id}`, onclick: () => removeChannel(id) }, "Remove channel"))),
    el("div", { class: "table-wrap" }, el("table", {},
      el("thead", {}, el("tr", {}, el("th", {}, "Input"), el("th", {}, "On air"), el("th", {}, "Settings"), el("th", {}))),
      tbody)),
    slot);
  return { card, info, tbody, slot, key: null };
}

function renderSources() {
  const list = $("#sources-list");
  const ids = new Set(state.channels.map((c) => c.id));
  for (const [id, parts] of sources.cards) {
    if (ids.has(id)) continue;
    if (editor.channel === id) closeEditor();
    parts.card.remove();
    sources.cards.delete(id);
  }
  const empty = list.querySelector(".empty");
  if (empty) empty.remove();
  state.channels.forEach((channel, index) => {
    let parts = sources.cards.get(channel.id);
    if (!parts) {
      parts = sourceCard(channel.id);
      sources.cards.set(channel.id, parts);
    }
    // Moving a card that is in place would take the focus out of the editor inside it.
    if (list.children[index] !== parts.card) list.insertBefore(parts.card, list.children[index] || null);
    fillSourceCard(parts, channel);
  });
  if (!state.channels.length) list.append(el("p", { class: "muted empty" }, state.haveStatus ? "No channels yet: add one below." : "Loading…"));
}

function fillSourceCard(parts, channel) {
  const configs = channel.inputs.map(inputConfig);
  // Rebuilt only when something shown changed, so a button is not swapped under the pointer.
  const key = JSON.stringify([channel.mode, channel.config, channel.active_input, configs]);
  if (parts.key === key) return;
  parts.key = key;
  const config = channel.config || {};
  parts.info.textContent = `mode ${config.mode || channel.mode}`;
  parts.tbody.replaceChildren(...(channel.inputs.length ? channel.inputs.map((input, i) => {
    const inputSettings = configs[i];
    const onAir = channel.active_input === input.id;
    const tid = `${channel.id}-${input.id}`;
    return el("tr", { "data-testid": `sources-input-${tid}`, class: onAir ? "on-air-row" : "" },
      el("td", {}, el("strong", {}, input.id)),
      el("td", {}, onAir ? pill("on air", "ok") : el("span", { class: "muted" }, "—")),
      el("td", {}, configList(inputSettings)),
      el("td", {}, el("div", { class: "buttons" },
        el("button", { type: "button", "data-testid": `edit-input-${tid}`, onclick: () => openEditor(channel.id, input.id) }, "Edit"),
        "stream_key_set" in inputSettings
          ? el("button", { type: "button", "data-testid": `regen-key-${tid}`, onclick: () => regenerateKey(channel.id, input.id) }, "New stream key")
          : null,
        input.type === "whip"
          ? el("a", { class: "button", href: `#/golive/${encodeURIComponent(channel.id)}/${encodeURIComponent(input.id)}`, "data-testid": `go-live-${tid}` }, "Go live")
          : null,
        el("button", { type: "button", class: "danger", "data-testid": `remove-input-${tid}`, onclick: () => removeInput(channel.id, input.id) }, "Remove"))));
  }) : [el("tr", {}, el("td", { colspan: "4", class: "muted" }, "No inputs yet."))]));
}

async function openEditor(channelId, inputId) {
  const parts = sources.cards.get(channelId);
  if (!parts) return;
  const form = $("#input-editor");
  clearEditorMessages();
  parts.slot.append(form);
  form.hidden = false;
  $("#input-editor-title").textContent = inputId ? `Edit input ${inputId} of ${channelId}` : `Add an input to ${channelId}`;
  $("#input-fields").replaceChildren(el("p", { class: "muted" }, "Loading the input types…"));
  let variants;
  try {
    variants = await inputVariants();
  } catch (error) {
    $("#input-fields").replaceChildren();
    $("#input-message").textContent = `The input types could not be loaded: ${error.message}`;
    return;
  }
  editor.channel = channelId;
  editor.input = inputId;
  editor.variants = variants;
  const picker = $("#input-type");
  picker.replaceChildren(...variants.map((v) => el("option", { value: v.kind }, v.title && v.title.toLowerCase() !== v.kind ? `${v.kind} — ${v.title}` : v.kind)));
  let values = null;
  if (inputId) {
    const channel = state.channels.find((c) => c.id === channelId);
    const input = channel && channel.inputs.find((i) => i.id === inputId);
    if (!input) {
      closeEditor();
      notify(`Input ${inputId} is gone from ${channelId}.`, "warn");
      return;
    }
    values = inputConfig(input);
    if (!variants.some((v) => v.kind === values.type)) {
      $("#input-message").textContent = `lunora's schema lists no input type “${values.type}”, so this input cannot be edited here.`;
      $("#input-fields").replaceChildren();
      return;
    }
    picker.value = values.type;
  } else if (variants.length) {
    picker.value = variants[0].kind;
  }
  picker.disabled = Boolean(inputId);
  buildFields(values);
  form.scrollIntoView({ behavior: "smooth", block: "nearest" });
  const first = editor.fields.find((f) => !f.control.readOnly);
  if (first) first.control.focus();
}

// Builds the fields of the picked type; what the user typed in fields of the same name
// (secrets aside) carries over when the type changes.
function buildFields(values) {
  const editing = Boolean(editor.input);
  let carried = values;
  if (!values && editor.fields.length) {
    carried = {};
    for (const { spec, control } of editor.fields) {
      if (spec.secret) continue;
      if (spec.kind === "checkbox") carried[spec.name] = control.checked;
      else if (spec.kind === "select") { if (control.value !== "") carried[spec.name] = optionValue(spec, control.value); }
      else if (control.value !== "") carried[spec.name] = spec.kind === "number" ? Number(control.value) : control.value;
    }
  }
  const variant = editor.variants.find((v) => v.kind === $("#input-type").value);
  $("#input-type-help").textContent = variant ? variant.description : "";
  editor.fields = variant ? variant.fields.map((spec) => fieldControl(spec, carried, editing)) : [];
  $("#input-fields").replaceChildren(...editor.fields.map((f) => f.label));
}

function clearEditorMessages() {
  $("#input-message").textContent = "";
  $("#input-problems").replaceChildren();
}

function closeEditor() {
  const form = $("#input-editor");
  for (const { control } of editor.fields) {
    if (control.type === "password") control.value = "";
  }
  editor.channel = null;
  editor.input = null;
  editor.fields = [];
  $("#input-fields").replaceChildren();
  clearEditorMessages();
  form.hidden = true;
  $("#page-sources").append(form);
}

async function saveInput(event) {
  event.preventDefault();
  const channelId = editor.channel;
  const inputId = editor.input;
  if (!channelId) return;
  const editing = Boolean(inputId);
  const kind = $("#input-type").value;
  const { body, problems } = collectFields(editor.fields, editing);
  // Secrets leave the page on every press of Save, whatever happens next.
  for (const { control } of editor.fields) {
    if (control.type === "password") control.value = "";
  }
  clearEditorMessages();
  if (problems.length) {
    $("#input-message").textContent = "Please fix:";
    $("#input-problems").replaceChildren(...problems.map((p) => el("li", {}, p)));
    return;
  }
  const payload = { type: kind, ...body };
  const id = editing ? inputId : String(body.id || "");
  try {
    const result = editing
      ? await api("PUT", `/api/v1/channels/${path(channelId)}/inputs/${path(inputId)}`, payload)
      : await api("POST", `/api/v1/channels/${path(channelId)}/inputs`, payload);
    closeEditor();
    notify(`Saved input ${id} of ${channelId}.`);
    if (result && typeof result.stream_key === "string") showStreamKey(channelId, id, result);
    refreshChannels();
  } catch (error) {
    // The error sentence often lists the problems already; each is shown once.
    $("#input-message").textContent = error.message;
    $("#input-problems").replaceChildren(...error.problems.filter((p) => !error.message.includes(p)).map((p) => el("li", {}, p)));
  }
}

function showStreamKey(channelId, inputId, { stream_key: key, publish_url: url }) {
  const server = typeof url === "string" ? url : "rtmp://HOST:1935/live";
  showOnce($("#sources-once"), {
    title: `OBS settings for input ${inputId} of ${channelId}`,
    summary: `OBS: Server = ${server}, Stream key = ${key}`,
    rows: [["Server", server], ["Stream key", key]],
    note: "OBS: Settings → Stream → Service “Custom…”. Lost it? Press “New stream key” on the input.",
  });
}

async function regenerateKey(channelId, inputId) {
  const channel = state.channels.find((c) => c.id === channelId);
  const onAir = channel && channel.active_input === inputId;
  const ok = await ask(`Make a new stream key for ${inputId} of ${channelId}? The old key is no longer accepted: OBS needs the new one to publish${onAir ? ". This input is ON AIR now" : ""}.`, { confirm: "Make a new key", danger: true });
  if (!ok) return;
  try {
    const result = await api("POST", `/api/v1/channels/${path(channelId)}/inputs/${path(inputId)}/stream-key`, {});
    showStreamKey(channelId, inputId, result || {});
  } catch (error) {
    notify(error.message, "bad");
  }
}

async function removeInput(channelId, inputId) {
  const channel = state.channels.find((c) => c.id === channelId);
  const onAir = channel && channel.active_input === inputId;
  const text = onAir
    ? `${inputId} is ON AIR in ${channelId} right now. Removing it cuts the program over to another input at once, or to nothing when no other input has a signal. Remove ${inputId} anyway?`
    : `Remove input ${inputId} from ${channelId}? An encoder sending to it is cut off and its settings are deleted.`;
  if (!(await ask(text, { confirm: onAir ? `Remove on-air input ${inputId}` : `Remove ${inputId}`, danger: true }))) return;
  try {
    await api("DELETE", `/api/v1/channels/${path(channelId)}/inputs/${path(inputId)}`, {});
    if (editor.channel === channelId && editor.input === inputId) closeEditor();
    notify(`Removed input ${inputId} of ${channelId}.`);
    refreshChannels();
  } catch (error) {
    notify(error.message, "bad");
  }
}

async function addChannel(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const message = form.querySelector(".form-message");
  const id = form.elements.id.value.trim();
  try {
    await api("POST", "/api/v1/channels", { id, mode: form.elements.mode.value });
    form.reset();
    message.className = "form-message ok";
    message.textContent = `Added channel ${id}; now add its inputs.`;
    refreshChannels();
  } catch (error) {
    message.className = "form-message error";
    message.textContent = [error.message, ...error.problems.filter((p) => !error.message.includes(p))].join(" ");
  }
}

async function removeChannel(id) {
  const channel = state.channels.find((c) => c.id === id);
  const inputs = channel ? channel.inputs.length : 0;
  const outputs = channel ? channel.outputs.length : 0;
  const text = `Remove channel ${id} with its ${inputs} input(s) and ${outputs} output(s)?${channel && channel.active_input ? ` It is ON AIR (${channel.active_input}) right now:` : ""} its encoders are cut off and its destinations stop at once.`;
  if (!(await ask(text, { confirm: `Remove channel ${id}`, danger: true }))) return;
  try {
    await api("DELETE", `/api/v1/channels/${path(id)}`, {});
    notify(`Removed channel ${id}.`);
    refreshChannels();
  } catch (error) {
    notify(error.message, "bad");
  }
}

// ---- users --------------------------------------------------------------------------------

async function loadUsers() {
  try {
    const users = await api("GET", "/api/v1/users");
    state.users = Array.isArray(users) ? users : [];
    renderUsers();
  } catch (error) {
    $("#users-message").textContent = error.message;
  }
}

function renderUsers() {
  $("#users-table tbody").replaceChildren(...state.users.map((user) => {
    const self = state.me && user.username === state.me.username;
    const role = el("select", { "data-testid": `user-role-${user.username}`, "aria-label": `Role of ${user.username}`, onchange: (e) => changeRole(user, e.currentTarget) },
      ROLES.map((r) => el("option", { value: r }, r)));
    role.value = user.role;
    return el("tr", { "data-testid": `user-${user.username}` },
      el("td", {}, el("strong", {}, user.username), self ? el("span", { class: "muted" }, " (you)") : null,
        user.must_change_password ? el("div", {}, pill("must change password", "warn")) : null),
      el("td", {}, role),
      el("td", {}, formatDate(user.created_at)),
      el("td", {}, el("div", { class: "buttons" },
        el("button", { type: "button", "data-testid": `reset-password-${user.username}`, onclick: () => resetPassword(user) }, "Reset password"),
        el("button", { type: "button", class: "danger", "data-testid": `remove-user-${user.username}`, onclick: () => removeUser(user) }, "Remove"))));
  }));
}

async function addUser(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const message = form.querySelector(".form-message");
  const username = form.elements.username.value.trim();
  const password = form.elements.password.value;
  form.elements.password.value = "";
  try {
    await api("POST", "/api/v1/users", { username, role: form.elements.role.value, password });
    form.reset();
    message.className = "form-message ok";
    message.textContent = `Added ${username}.`;
    await loadUsers();
  } catch (error) {
    message.className = "form-message error";
    message.textContent = [error.message, ...error.problems.filter((p) => !error.message.includes(p))].join(" ");
  }
}

async function changeRole(user, select) {
  const role = select.value;
  const self = state.me && user.username === state.me.username;
  const text = self
    ? `Make yourself ${role}? You lose what a superadmin can do at once, this page included.`
    : `Make ${user.username} ${role}? It takes effect at their next request.`;
  if (!(await ask(text, { confirm: `Make ${role}`, danger: self }))) {
    select.value = user.role;
    return;
  }
  try {
    await api("PUT", `/api/v1/users/${path(user.username)}`, { role });
    $("#users-message").textContent = `${user.username} is now ${role}.`;
    if (self) {
      await boot();
      return;
    }
    await loadUsers();
  } catch (error) {
    select.value = user.role;
    $("#users-message").textContent = error.message;
  }
}

async function resetPassword(user) {
  const password = await ask(`New password for ${user.username}:`, { confirm: "Set password", password: true });
  if (!password) return;
  try {
    await api("PUT", `/api/v1/users/${path(user.username)}`, { password });
    $("#users-message").textContent = `The password of ${user.username} is set; tell them over a safe channel.`;
    await loadUsers();
  } catch (error) {
    $("#users-message").textContent = [error.message, ...error.problems].join(" ");
  }
}

async function removeUser(user) {
  const self = state.me && user.username === state.me.username;
  const text = self ? "Remove your own account? You are logged out at once and cannot log in again." : `Remove ${user.username}? Their sessions and API tokens stop working at once.`;
  if (!(await ask(text, { confirm: `Remove ${user.username}`, danger: true }))) return;
  try {
    await api("DELETE", `/api/v1/users/${path(user.username)}`, {});
    $("#users-message").textContent = `Removed ${user.username}.`;
    await loadUsers();
  } catch (error) {
    $("#users-message").textContent = error.message;
  }
}

// ---- API tokens ---------------------------------------------------------------------------

async function loadTokens() {
  try {
    const tokens = await api("GET", "/api/v1/tokens");
    renderTokens(Array.isArray(tokens) ? tokens : []);
  } catch (error) {
    $("#token-form .form-message").textContent = error.message;
  }
}

function renderTokens(tokens) {
  $("#tokens-table tbody").replaceChildren(...(tokens.length ? tokens.map((token) => el("tr", { "data-testid": `token-${token.name}` },
    el("td", {}, el("strong", {}, token.name)),
    el("td", {}, token.owner),
    el("td", {}, token.role),
    el("td", {}, formatDate(token.created_at)),
    el("td", {}, formatDate(token.last_used_at)),
    el("td", {}, el("button", { type: "button", class: "danger", "data-testid": `revoke-token-${token.name}`, onclick: () => revokeToken(token) }, "Revoke"))))
    : [el("tr", {}, el("td", { colspan: "6", class: "muted" }, "No tokens."))]));
}

async function makeToken(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const message = form.querySelector(".form-message");
  const body = { name: form.elements.name.value.trim() };
  if (form.elements.role.value) body.role = form.elements.role.value;
  try {
    const token = await api("POST", "/api/v1/tokens", body);
    form.reset();
    message.textContent = "";
    showOnce($("#tokens-once"), {
      title: `API token “${token.name}” (${token.role})`,
      rows: [["Token", token.token]],
      note: "Use it as: Authorization: Bearer TOKEN",
    });
    await loadTokens();
  } catch (error) {
    message.className = "form-message error";
    message.textContent = [error.message, ...error.problems.filter((p) => !error.message.includes(p))].join(" ");
  }
}

async function revokeToken(token) {
  if (!(await ask(`Revoke the token “${token.name}” of ${token.owner}? Whatever uses it is refused from now on.`, { confirm: "Revoke", danger: true }))) return;
  try {
    await api("DELETE", `/api/v1/tokens/${path(String(token.id))}`, {});
    await loadTokens();
  } catch (error) {
    notify(error.message, "bad");
  }
}

// ---- start --------------------------------------------------------------------------------

function init() {
  $("#login-form").addEventListener("submit", logIn);
  $("#password-form").addEventListener("submit", changePassword);
  $("#account-password-form").addEventListener("submit", changePassword);
  for (const button of $$(".logout")) button.addEventListener("click", logOut);
  $("#channel").addEventListener("change", (event) => { location.hash = `#/${state.page === "cloud" ? "cloud" : "channel"}/${encodeURIComponent(event.target.value)}`; });
  $("#cloud-form").addEventListener("submit", provisionCloud);
  $("#cloud-start").addEventListener("click", () => cloudLifecycle("start"));
  $("#cloud-stop").addEventListener("click", () => cloudLifecycle("stop"));
  $("#cloud-teardown").addEventListener("click", teardownCloud);
  for (const button of $$("[data-jump]")) {
    button.addEventListener("click", () => $(`#${button.dataset.jump}`).scrollIntoView({ behavior: "smooth", block: "start" }));
  }
  const form = $("#destination-form");
  form.addEventListener("submit", saveDestination);
  form.preset.addEventListener("change", showPresetFields);
  $("#form-cancel").addEventListener("click", resetForm);
  $("#start-all").addEventListener("click", () => controlAll(true));
  $("#stop-all").addEventListener("click", () => controlAll(false));
  $("#input-editor").addEventListener("submit", saveInput);
  $("#input-type").addEventListener("change", () => buildFields(null));
  $("#input-cancel").addEventListener("click", closeEditor);
  $("#channel-form").addEventListener("submit", addChannel);
  $("#user-form").addEventListener("submit", addUser);
  $("#token-form").addEventListener("submit", makeToken);
  window.addEventListener("hashchange", route);
  showPresetFields();
  setInterval(() => { preview.update(); cloudPreview.update(); }, 500);
  boot();
}

// ---- go live from this browser (WHIP) -----------------------------------------------------

const golive = { channel: null, input: null, pc: null, stream: null, session: null, timer: null, last: null };

function goLiveState(text) {
  $('[data-testid="golive-state"]').textContent = text;
}

function goLiveMessage(text) {
  $("#golive-message").textContent = text || "";
}

// Gathers this side's candidates before the offer goes out (at most 2 s): the box answers in
// one round trip and WHIP has no trickle here.
function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 2000);
  });
}

async function startGoLive(event) {
  event.preventDefault();
  if (golive.pc) return;
  goLiveMessage("");
  const form = $("#golive-form");
  const [width, height] = form.elements.resolution.value.split("x").map(Number);
  const fps = Number(form.elements.fps.value);
  const kbps = Number(form.elements.bitrate.value);
  const video = { width: { ideal: width }, height: { ideal: height }, frameRate: { ideal: fps } };
  const { channel, input } = golive;
  try {
    goLiveState("opening the camera…");
    const stream = form.elements.source.value === "screen"
      ? await navigator.mediaDevices.getDisplayMedia({ video, audio: false })
      : await navigator.mediaDevices.getUserMedia({ video, audio: true });
    if (form.elements.source.value === "screen") {
      const mic = await navigator.mediaDevices.getUserMedia({ audio: true }).catch(() => null);
      if (mic) for (const track of mic.getAudioTracks()) stream.addTrack(track);
    }
    golive.stream = stream;
    $("#golive-preview").srcObject = stream;
    goLiveState("asking the box for a publish credential…");
    const credential = await api("POST", `/api/v1/channels/${encodeURIComponent(channel)}/inputs/${encodeURIComponent(input)}/publish-credential`);
    const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle" });
    golive.pc = pc;
    pc.addEventListener("connectionstatechange", () => {
      goLiveState(pc.connectionState === "connected" ? "live" : pc.connectionState);
      if (pc.connectionState === "failed") goLiveMessage("the WebRTC connection failed: is the box's [whip] udp_listen port reachable at its ice_addresses?");
    });
    for (const track of stream.getTracks()) {
      const transceiver = pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
      if (track.kind === "video") {
        const parameters = transceiver.sender.getParameters();
        parameters.encodings = [{ maxBitrate: kbps * 1000, maxFramerate: fps }];
        parameters.degradationPreference = "maintain-resolution";
        await transceiver.sender.setParameters(parameters).catch(() => {});
      }
    }
    await pc.setLocalDescription(await pc.createOffer());
    goLiveState("connecting…");
    await gathered(pc);
    const response = await fetch(credential.whip_url, {
      method: "POST",
      headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${credential.token}` },
      body: pc.localDescription.sdp,
    });
    const answer = await response.text();
    if (response.status !== 201) {
      let reason = answer;
      try { reason = JSON.parse(answer).error; } catch { /* plain text */ }
      throw new Error(`the box refused the offer (HTTP ${response.status}): ${reason}`);
    }
    golive.session = response.headers.get("Location");
    await pc.setRemoteDescription({ type: "answer", sdp: answer });
    $("#golive-stop").disabled = false;
    form.querySelector('[data-testid="golive-start"]').disabled = true;
    golive.last = null;
    golive.timer = setInterval(goLiveStats, 1000);
  } catch (error) {
    goLiveMessage(error.message || String(error));
    stopGoLive("failed");
  }
}

// The video sender's bitrate over the last second.
async function goLiveStats() {
  if (!golive.pc) return;
  const report = await golive.pc.getStats().catch(() => null);
  if (!report) return;
  let bytes = 0;
  let at = 0;
  report.forEach((s) => {
    if (s.type === "outbound-rtp" && s.kind === "video") {
      bytes += s.bytesSent;
      at = s.timestamp;
    }
  });
  if (golive.last && at > golive.last.at) {
    const kbps = ((bytes - golive.last.bytes) * 8) / (at - golive.last.at);
    $('[data-testid="golive-bitrate"]').textContent = `${Math.round(kbps)} kbit/s`;
  }
  golive.last = { bytes, at };
}

function stopGoLive(why) {
  clearInterval(golive.timer);
  golive.timer = null;
  const pc = golive.pc;
  golive.pc = null;
  // The session URL is its own credential; keepalive lets it go out as the page unloads. The
  // connection closes once the box has ended the session (or after a second), so the box
  // sees an orderly end rather than a vanished peer.
  const ended = golive.session
    ? fetch(golive.session, { method: "DELETE", keepalive: true }).catch(() => {})
    : Promise.resolve();
  golive.session = null;
  if (pc) Promise.race([ended, new Promise((resolve) => setTimeout(resolve, 1000))]).then(() => pc.close());
  if (golive.stream) for (const track of golive.stream.getTracks()) track.stop();
  golive.stream = null;
  const preview = $("#golive-preview");
  if (preview) preview.srcObject = null;
  const stop = $("#golive-stop");
  if (stop) stop.disabled = true;
  const start = $('[data-testid="golive-start"]');
  if (start) start.disabled = false;
  const bitrate = $('[data-testid="golive-bitrate"]');
  if (bitrate) bitrate.textContent = "—";
  if (why !== "failed" && $('[data-testid="golive-state"]')) goLiveState(why === "stopped" ? "stopped" : "not started");
}

$("#golive-form").addEventListener("submit", startGoLive);
$("#golive-stop").addEventListener("click", () => stopGoLive("stopped"));
window.addEventListener("pagehide", () => stopGoLive("left the page"));

init();

