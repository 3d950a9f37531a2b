// The dashboard in a real browser (Debian's chromium, driven by playwright-core). Started by
// the Rust integration test tests/it/ui.rs, which runs lunora (and, for some scenarios, ffmpeg
// encoders and nginx-rtmp) and passes what the script needs in the environment:
//
//   LUNORA_URL            http://127.0.0.1:PORT, the daemon (always)
//   SCREENSHOT            where to save the final picture of the page (always; also on failure)
//   SCENARIO              which checks to run (default: first-run when FIRST_RUN=1, else dashboard):
//     first-run   the embedded default config, no encoder: the login page comes first (saved as
//                 login.png next to SCREENSHOT), a wrong password is refused with a reason,
//                 the first-run admin logs in (choosing a new password if the page asks),
//                 the overview leads to channel "program", which says "waiting for signal" and
//                 shows the ingest help; log out and in again keeps the page
//     dashboard   channel "program" fed on inputs main and backup: log in as an admin, the
//                 player plays, force backup (confirmed in a dialog) and auto, add/start/stop/
//                 edit a destination on nginx-rtmp, a reload keeps the channel page
//     user        log in as a `user`: status and destinations shown; no Sources/Users
//                 navigation and no force buttons at all; #/sources leads back to the overview
//     sources     log in as an admin: add an SRT input to "program" from the form generated
//                 from GET /api/v1/schema/inputs, see it listed (sources.png), edit it without
//                 retyping its passphrase
//     users       log in as a superadmin: add a user on the Users page and see it listed
//                 (users.png); make an API token (shown once, works, revoked)
//     cloud       log in as a superadmin with [aws] pointing at moto: the Cloud page of
//                 "program" (fed by an encoder) says nothing is provisioned, provisions edge
//                 RTMP from its form, shows IDLE and the box's feed live, starts the channel
//                 (confirmed) and shows RUNNING with how long, plays the cloud preview (moto
//                 has no MediaPackage endpoints, so the page is given the box's own preview
//                 as the playback URL), tears down (confirmed) (cloud.png)
//     golive      log in as an admin, open "Go live" for WHIP input GOLIVE_INPUT of CHANNEL from
//                 the Sources page, publish the fake camera and microphone at 1280×720 and
//                 2.5 Mbit/s: the page says live with a bitrate and a preview, the daemon shows
//                 the input connected with frames; stay live GOLIVE_HOLD_S seconds (default
//                 10; the Rust test checks the channel meanwhile), then Stop: the daemon shows
//                 the input waiting again (the page's DELETE ended the session) (golive.png)
//   FIRST_RUN=1           same as SCENARIO=first-run (what ui.rs set before scenarios existed)
//   LUNORA_ADMIN_PASSWORD the first-run admin's password (first-run; the default password of
//                         the other scenarios too)
//   LUNORA_ADMIN_USERNAME the first-run admin's name (default: admin)
//   LUNORA_USERNAME       who logs in (dashboard, user, sources, users; default: admin), with
//   LUNORA_PASSWORD       their password (default: LUNORA_ADMIN_PASSWORD)
//   LUNORA_NEW_PASSWORD   the password chosen when the page asks for a new one (must change
//                         password); default: the old one with "-changed" appended
//   RTMP_URL              rtmp://127.0.0.1:PORT/live, nginx-rtmp for the destination (dashboard)
//   SRT_INPUT_PORT        a free UDP port for the SRT input the sources scenario adds (sources)
//   RTMP_INPUT=1          sources: also add an RTMP input (the daemon then binds its RTMP
//                         listen address), check its key is shown once, make a new one, remove it
//   NEW_USERNAME          the user the users scenario adds (default: ui-operator)
//   CHANNEL               the channel the scenarios work on (default: program)
//   GOLIVE_INPUT          golive: the WHIP input to publish to
//   GOLIVE_HOLD_S         golive: seconds to stay live before stopping
//   CHROMIUM              the browser (default: /usr/bin/chromium)
//
// Every scenario also checks that no secret typed into a form (password, passphrase, stream
// key) or shown once (stream key, token) is left in the page's HTML, text or any field after
// it was sent or dismissed, and that the page threw no script error.
// Exits 0 when every check passes; otherwise prints what failed and exits 1.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { chromium } from "playwright-core";

const env = process.env;
const base = env.LUNORA_URL;
const screenshot = env.SCREENSHOT;
const scenario = env.SCENARIO || (env.FIRST_RUN === "1" ? "first-run" : "dashboard");
const channelId = env.CHANNEL || "program";
const adminUser = env.LUNORA_ADMIN_USERNAME || "admin";
const username = env.LUNORA_USERNAME || adminUser;
const password = env.LUNORA_PASSWORD || env.LUNORA_ADMIN_PASSWORD;
const rtmpUrl = env.RTMP_URL;
const secretKey = "ui-test-secret-4b1d";

const needs = {
  "first-run": { LUNORA_ADMIN_PASSWORD: env.LUNORA_ADMIN_PASSWORD },
  dashboard: { "LUNORA_PASSWORD or LUNORA_ADMIN_PASSWORD": password, RTMP_URL: rtmpUrl },
  user: { "LUNORA_PASSWORD or LUNORA_ADMIN_PASSWORD": password },
  sources: { "LUNORA_PASSWORD or LUNORA_ADMIN_PASSWORD": password, SRT_INPUT_PORT: env.SRT_INPUT_PORT },
  users: { "LUNORA_PASSWORD or LUNORA_ADMIN_PASSWORD": password },
  cloud: { "LUNORA_PASSWORD or LUNORA_ADMIN_PASSWORD": password },
  golive: { "LUNORA_PASSWORD or LUNORA_ADMIN_PASSWORD": password, GOLIVE_INPUT: env.GOLIVE_INPUT },
};
if (!base || !screenshot || !(scenario in needs)) {
  console.error(`set LUNORA_URL, SCREENSHOT and SCENARIO (one of ${Object.keys(needs).join(", ")}; got ${JSON.stringify(scenario)})`);
  process.exit(2);
}
const missing = Object.entries(needs[scenario]).filter(([, value]) => !value).map(([name]) => name);
if (missing.length) {
  console.error(`scenario ${scenario} needs ${missing.join(", ")}`);
  process.exit(2);
}
const pictures = dirname(screenshot);

const step = (text) => console.log(`[ui:${scenario}] ${text}`);

async function until(what, timeoutMs, check) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await check();
      if (last) return last;
    } catch (error) {
      last = error.message;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${what}: not within ${timeoutMs} ms (last: ${JSON.stringify(last)})`);
}

const profile = mkdtempSync(join(tmpdir(), "lunora-ui-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic", "--autoplay-policy=no-user-gesture-required",
    // A fake camera and microphone, granted without asking; ICE may use 127.0.0.1 (the box's
    // [whip] ice_addresses in the tests).
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--allow-loopback-in-peer-connection",
  ],
  viewport: { width: 1280, height: 1400 },
});
const page = context.pages()[0] || (await context.newPage());
page.on("dialog", (dialog) => dialog.accept());
const pageErrors = [];
page.on("pageerror", (error) => pageErrors.push(error.message));

// The API as the logged-in browser sees it: context.request carries the page's cookies.
async function api(path) {
  const response = await context.request.get(`${base}${path}`);
  if (!response.ok()) throw new Error(`GET ${path}: HTTP ${response.status()}`);
  return response.json();
}

const text = async (testid) => (await page.textContent(`[data-testid="${testid}"]`)) ?? "";
const visible = (testid) => page.isVisible(`[data-testid="${testid}"]`);

// Every secret typed or shown in this run: none may stay in the page once sent or dismissed.
const secrets = new Set();
async function noSecretsLeft(when) {
  const found = await page.evaluate((list) => {
    const fields = [...document.querySelectorAll("input, textarea")].map((f) => f.value);
    const html = document.documentElement.outerHTML;
    const shown = document.body.innerText;
    return list.filter((s) => fields.some((v) => v.includes(s)) || html.includes(s) || shown.includes(s));
  }, [...secrets]);
  if (found.length) throw new Error(`${found.length} secret(s) still in the page ${when}`);
}

// Confirms the page's <dialog>; returns what it asked.
async function confirmDialog(expected) {
  await page.waitForSelector('[data-testid="confirm-dialog"]', { state: "visible", timeout: 5000 });
  const question = await text("confirm-text");
  if (expected && !question.includes(expected)) throw new Error(`the confirmation asks ${JSON.stringify(question)}, not about ${expected}`);
  await page.click('[data-testid="confirm-yes"]');
  await page.waitForSelector('[data-testid="confirm-dialog"]', { state: "hidden", timeout: 5000 });
  return question;
}

// Each user's password as it is now (a login may have had to change it).
const passwords = new Map();

// Logs in through the form (choosing a new password when asked); returns the role shown.
async function logIn(user, pass = passwords.get(user)) {
  await page.waitForSelector('[data-testid="login-form"]', { state: "visible", timeout: 10000 });
  secrets.add(pass);
  await page.fill('[data-testid="login-username"]', user);
  await page.fill('[data-testid="login-password"]', pass);
  await page.click('[data-testid="login-submit"]');
  const where = await until(`log in as ${user}`, 15000, async () => {
    if (await visible("password-form")) return "change";
    if (await visible("user-menu")) return "app";
    const refused = await text("login-message");
    return refused ? `refused: ${refused}` : null;
  });
  if (where.startsWith("refused")) throw new Error(`log in as ${user} ${where}`);
  if (where === "change") {
    const next = env.LUNORA_NEW_PASSWORD || `${pass}-changed`;
    step(`the page asks ${user} for a new password: choosing LUNORA_NEW_PASSWORD (or the old one + "-changed")`);
    secrets.add(next);
    await page.fill('[data-testid="password-current"]', pass);
    await page.fill('[data-testid="password-new"]', next);
    await page.fill('[data-testid="password-repeat"]', next);
    await page.click('[data-testid="password-save"]');
    await until("the new password is taken", 10000, async () => {
      if (await visible("user-menu")) return true;
      const problem = await text("password-message");
      if (problem) throw new Error(problem);
      return false;
    });
    passwords.set(user, next);
  } else {
    passwords.set(user, pass);
  }
  const shown = await text("me-name");
  if (shown !== user) throw new Error(`the header says ${JSON.stringify(shown)} is logged in, not ${user}`);
  await noSecretsLeft("after logging in");
  return text("me-role");
}

async function liveUpdates() {
  await until("live updates connect", 10000, async () => (await text("connection")) === "connected to box");
}

async function onChannelPage(id) {
  await until(`channel page of ${id}`, 10000, async () => (await visible("on-air")) && (await text("channel-title")).includes(id) && (await page.evaluate(() => location.hash)) === `#/channel/${id}`);
}

async function firstRun() {
  step("open the dashboard: the login page comes first");
  await page.goto(base, { waitUntil: "domcontentloaded" });
  await page.waitForSelector('[data-testid="login-form"]', { state: "visible", timeout: 10000 });
  if (await visible("user-menu")) throw new Error("the dashboard is shown before logging in");
  await page.screenshot({ path: join(pictures, "login.png"), fullPage: true });

  step("a wrong password is refused, with the reason shown and the field emptied");
  const wrong = `${env.LUNORA_ADMIN_PASSWORD}-wrong`;
  secrets.add(wrong);
  await page.fill('[data-testid="login-username"]', adminUser);
  await page.fill('[data-testid="login-password"]', wrong);
  await page.click('[data-testid="login-submit"]');
  const refusal = await until("refusal shown", 15000, () => text("login-message"));
  step(`refused: ${refusal}`);
  if (await visible("user-menu")) throw new Error("a wrong password let us in");
  await noSecretsLeft("after a refused login");

  step("log in as the first-run admin");
  const role = await logIn(adminUser, env.LUNORA_ADMIN_PASSWORD);
  step(`logged in as ${adminUser} (${role})`);
  await liveUpdates();
  await until(`overview lists ${channelId}`, 5000, () => visible(`overview-${channelId}`));
  await page.click(`[data-testid="overview-${channelId}"]`);
  await onChannelPage(channelId);
  await until("'waiting for signal' shown", 5000, () => visible("waiting"));
  const onAir = await text("on-air");
  if (!onAir.includes("waiting for signal")) throw new Error(`on air says ${JSON.stringify(onAir)}`);
  for (const id of ["main", "backup"]) {
    await until(`ingest help for ${id}`, 5000, () => visible(`ingest-${id}`));
  }
  const help = await page.textContent("#ingest");
  for (const expected of ["9000", "9001", "Latency (ms)", "OBS"]) {
    if (!help.includes(expected)) throw new Error(`ingest help lacks ${expected}: ${help}`);
  }
  // ffmpeg takes the SRT latency in µs, srt-live-transmit in ms: one URL each.
  const latency = (await api(`/api/v1/channels/${channelId}`)).inputs.find((i) => i.id === "main").ingest.latency_ms;
  if (!help.includes(`latency=${latency * 1000}&pkt_size=1316`) || !new RegExp(`latency=${latency}(?![0-9])`).test(help)) {
    throw new Error(`ingest help lacks the ffmpeg (µs) and srt-live-transmit (ms) URLs for ${latency} ms: ${help}`);
  }
  const icon = await page.getAttribute('link[rel="icon"]', "href");
  if (!icon || !icon.startsWith("data:image/svg+xml")) throw new Error(`no favicon: ${icon}`);

  step("log out, and in again: the channel page comes back");
  await page.click('[data-testid="logout"]');
  await page.waitForSelector('[data-testid="login-form"]', { state: "visible", timeout: 10000 });
  if (await visible("on-air")) throw new Error("the channel is still shown after logging out");
  await logIn(adminUser);
  await onChannelPage(channelId);
  await noSecretsLeft("at the end");
  step("first run checks passed");
}

async function dashboard() {
  step("open the channel page: log in first, then the page asked for");
  await page.goto(`${base}/#/channel/${channelId}`, { waitUntil: "domcontentloaded" });
  await logIn(username, password);
  await liveUpdates();
  await onChannelPage(channelId);
  await until("main on air", 20000, async () => (await text("on-air")) === "main");
  if (await visible("waiting")) throw new Error("'waiting for signal' still shown with encoders connected");
  for (const id of ["main", "backup"]) {
    await until(`ingest help for ${id}`, 5000, () => visible(`ingest-${id}`));
  }

  step("the player plays: currentTime advances at least 3 s");
  const start = await until("playback starts", 40000, async () => {
    const t = await page.$eval('[data-testid="video"]', (v) => v.currentTime);
    return t > 0 ? t : null;
  });
  await until("3 s of playback", 20000, async () => (await page.$eval('[data-testid="video"]', (v) => v.currentTime)) >= start + 3);
  const playback = await text("playback-state");
  if (playback !== "playing") throw new Error(`playback status says ${JSON.stringify(playback)}`);
  const resolution = await page.textContent("#playback-resolution");
  if (!resolution.includes("×")) throw new Error(`no resolution shown: ${resolution}`);

  step("each input shows its video format and its TR 101 290 errors of the last 5 minutes");
  const status = await api(`/api/v1/channels/${channelId}`);
  for (const input of status.inputs) {
    // A field missing from the status fails here, not as a quietly empty cell.
    for (const field of ["tr101290", "tr101290_last_5min", "video"]) {
      if (input[field] == null || typeof input[field] !== "object") throw new Error(`input ${input.id} has no ${field}: ${JSON.stringify(input)}`);
    }
    const totals = Object.keys(input.tr101290).sort().join();
    if (Object.keys(input.tr101290_last_5min).sort().join() !== totals) throw new Error(`tr101290_last_5min does not list every indicator: ${JSON.stringify(input.tr101290_last_5min)}`);
    const format = await until(`video format of ${input.id}`, 5000, async () => {
      const shown = await text(`video-${input.id}`);
      return shown.includes("640×360") ? shown : null;
    });
    for (const expected of ["h264", "25 fps", "progressive"]) {
      if (!format.includes(expected)) throw new Error(`video format of ${input.id} shows ${JSON.stringify(format)}, not ${expected}`);
    }
  }
  // Red exactly when the API counts errors in the last 5 minutes (an encoder's file is clean).
  await until("TR 101 290 cell of main agrees with the API", 5000, async () => {
    const recent = Object.values((await api(`/api/v1/channels/${channelId}`)).inputs.find((i) => i.id === "main").tr101290_last_5min).some((n) => n > 0);
    const cell = await page.$eval('[data-testid="tr101290-main"]', (c) => ({ text: c.textContent, red: c.classList.contains("error"), title: c.title }));
    if (!/since start/i.test(cell.title)) throw new Error(`no totals in the tooltip: ${JSON.stringify(cell)}`);
    return cell.red === recent ? cell : null;
  });
  await tr101290Clears();

  step("force backup (asked first): the API and the page show it within 2 s");
  await page.click('[data-testid="force-backup"]');
  await page.waitForSelector('[data-testid="confirm-dialog"]', { state: "visible", timeout: 5000 });
  if (!(await text("confirm-text")).includes("backup")) throw new Error("the confirmation does not name the input");
  await page.click('[data-testid="confirm-yes"]');
  const clicked = Date.now();
  await until("API confirms backup", 2000, async () => (await api(`/api/v1/channels/${channelId}`)).active_input === "backup");
  await until("page shows backup", 2000 - (Date.now() - clicked) + 500, async () => (await text("on-air")) === "backup");
  console.log(`[ui:${scenario}] switch shown after ${Date.now() - clicked} ms`);
  await page.click('[data-testid="force-auto"]');
  await until("back to main", 10000, async () => (await api(`/api/v1/channels/${channelId}`)).active_input === "main");

  step("stop all asks first; cancelling sends nothing");
  await page.click('[data-testid="stop-all"]');
  await page.waitForSelector('[data-testid="confirm-dialog"]', { state: "visible", timeout: 5000 });
  await page.click('[data-testid="confirm-no"]');
  await page.waitForSelector('[data-testid="confirm-dialog"]', { state: "hidden", timeout: 5000 });

  step("add a destination; the key is never shown again");
  secrets.add(secretKey);
  await page.fill('[data-testid="dest-id"]', "nginx");
  await page.selectOption('[data-testid="dest-preset"]', "custom");
  await page.fill('[data-testid="dest-url"]', rtmpUrl);
  await page.fill('[data-testid="dest-key"]', secretKey);
  await page.click('[data-testid="dest-save"]');
  await until("saved", 5000, async () => (await text("dest-message")).startsWith("Saved"));
  await until("destination listed", 5000, () => visible("output-nginx"));
  await noSecretsLeft("after saving the destination");

  step("start and stop it against nginx-rtmp");
  await page.click('[data-testid="start-nginx"]');
  await until("destination live (page)", 15000, async () => (await text("state-nginx")).startsWith("live"));
  const started = (await api(`/api/v1/channels/${channelId}`)).outputs.find((o) => o.id === "nginx");
  if (started.state !== "live") throw new Error(`API says ${started.state}`);
  await page.click('[data-testid="stop-nginx"]');
  await until("destination idle", 10000, async () => (await text("state-nginx")).startsWith("idle"));

  step("edit it without retyping the key");
  await page.click('[data-testid="edit-nginx"]');
  const keyField = await page.inputValue('[data-testid="dest-key"]');
  if (keyField !== "") throw new Error("the edit form shows the saved key");
  await page.click('[data-testid="dest-save"]');
  await until("edit saved", 5000, async () => (await text("dest-message")).startsWith("Saved"));
  await noSecretsLeft("after editing the destination");

  step("a reload keeps the channel page and the session");
  await page.reload({ waitUntil: "domcontentloaded" });
  await onChannelPage(channelId);
  await until("status after the reload", 10000, async () => (await text("on-air")) === "main");
  step("all checks passed");
}

// The colour follows the last 5 minutes: the page is fed a status (as the live events bring
// it) with recent errors, then the same totals five clean minutes later.
async function tr101290Clears() {
  const channels = await api("/api/v1/channels");
  const main = (list) => list.find((c) => c.id === channelId).inputs.find((i) => i.id === "main");
  // Whatever the real stream had, the window holds only these 7 errors, then none.
  const burst = structuredClone(channels);
  const recent = main(burst).tr101290_last_5min;
  for (const indicator of Object.keys(recent)) recent[indicator] = 0;
  main(burst).tr101290.continuity_count_error += 7;
  recent.continuity_count_error = 7;
  const healed = structuredClone(burst);
  main(healed).tr101290_last_5min.continuity_count_error = 0;
  let served = burst;
  const events = (route) => route.fulfill({
    status: 200,
    headers: { "content-type": "text/event-stream", "cache-control": "no-store" },
    body: `retry: 200\nevent: status\ndata: ${JSON.stringify(served)}\n\n`,
  });
  const list = (route) => (route.request().method() === "GET" ? route.fulfill({ json: served }) : route.continue());
  await page.route("**/api/v1/events", events);
  await page.route("**/api/v1/channels", list);
  try {
    await page.reload({ waitUntil: "domcontentloaded" });
    await onChannelPage(channelId);
    const cell = () => page.$eval('[data-testid="tr101290-main"]', (c) => ({ text: c.textContent, red: c.classList.contains("error"), title: c.title }));
    const red = await until("recent errors shown in red", 10000, async () => {
      const now = await cell();
      return now.red ? now : null;
    });
    if (red.text !== "continuity count error 7 in 5 min") throw new Error(`recent errors cell: ${JSON.stringify(red)}`);
    served = healed;
    const cleared = await until("the cell clears once the window is clean", 10000, async () => {
      const now = await cell();
      return now.red ? null : now;
    });
    if (!cleared.text.includes("none in 5 min")) throw new Error(`cleared cell: ${JSON.stringify(cleared)}`);
    if (!cleared.title.includes("continuity count error")) throw new Error(`the totals left the tooltip: ${JSON.stringify(cleared)}`);

    step("at tablet width a long destination error wraps inside its cell");
    const refusal = `TLS handshake failed: invalid peer certificate: ${"x".repeat(40)}/${"UnknownIssuer".repeat(12)}`;
    served = structuredClone(healed);
    served.find((c) => c.id === channelId).outputs.push({
      id: "long-error", type: "rtmp", mode: "push", address: "rtmps://live-api-s.example.com:443/rtmp/",
      destination: { preset: "custom", backup_ingest: false, autostart: false, stream_key_set: true },
      state: "retrying", peers: [], bytes_total: 0, last_error: refusal, next_retry_seconds: 8, warnings: [],
    });
    await page.setViewportSize({ width: 768, height: 1024 });
    await until("the long error is shown", 10000, async () => (await text("output-long-error")).includes("UnknownIssuer"));
    const fit = await page.evaluate(() => {
      const fits = (id) => { const table = document.getElementById(id); return table.scrollWidth <= table.parentElement.clientWidth; };
      // Button labels stay on one line (the same height as a one-word button).
      const heights = [...document.querySelectorAll("#outputs button")].map((b) => b.getBoundingClientRect().height);
      const whole = heights.length > 0 && Math.max(...heights) - Math.min(...heights) < 1;
      return { inputs: fits("inputs"), outputs: fits("outputs"), page: document.documentElement.scrollWidth <= window.innerWidth, whole };
    });
    if (!fit.inputs || !fit.outputs || !fit.page || !fit.whole) throw new Error(`at 768 px: ${JSON.stringify(fit)}`);
    await page.screenshot({ path: join(pictures, "tablet-long-error.png"), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 1400 });

    step("a channel with one input has no force buttons");
    served = structuredClone(healed);
    const single = served.find((c) => c.id === channelId);
    single.inputs = single.inputs.filter((i) => i.id === "main");
    await until("one input listed", 10000, async () => !(await visible("input-backup")) && (await visible("input-main")));
    const forceButtons = await page.locator('[data-testid^="force-"]').count();
    if (forceButtons) throw new Error(`${forceButtons} force button(s) with a single input`);
  } finally {
    await page.unroute("**/api/v1/events", events);
    await page.unroute("**/api/v1/channels", list);
  }
  await page.reload({ waitUntil: "domcontentloaded" });
  await onChannelPage(channelId);
  await liveUpdates();
  await until("real status again", 20000, async () => (await text("on-air")) === "main");
}

async function user() {
  step("log in as a user, straight to the channel page");
  await page.goto(`${base}/#/channel/${channelId}`, { waitUntil: "domcontentloaded" });
  const role = await logIn(username, password);
  if (role !== "user") throw new Error(`logged in as ${role}, the scenario needs a user`);
  await liveUpdates();
  await onChannelPage(channelId);
  await until("status shown", 10000, async () => (await text("on-air")) !== "—");

  step("destinations are there to manage");
  for (const id of ["destinations", "start-all", "stop-all", "dest-save"]) {
    if (!(await visible(id))) throw new Error(`a user does not see ${id}`);
  }

  step("no Sources, no Users, no force buttons: not even hidden in the page");
  for (const id of ["nav-sources", "nav-users"]) {
    if (await visible(id)) throw new Error(`a user sees ${id}`);
  }
  const forceButtons = await page.locator('[data-testid^="force-"]').count();
  if (forceButtons) throw new Error(`a user has ${forceButtons} force button(s) in the page`);

  step("#/sources is not a user's page: back to the overview");
  await page.evaluate(() => { location.hash = "#/sources"; });
  await until("overview instead", 5000, async () => (await page.evaluate(() => location.hash)) === "#/" && (await visible("overview")));
  if (await page.isVisible("#page-sources")) throw new Error("a user is shown the sources page");
  await until(`overview lists ${channelId}`, 5000, () => visible(`overview-${channelId}`));
  const outputs = await text(`overview-outputs-${channelId}`);
  if (!/^\d+\/\d+$/.test(outputs)) throw new Error(`the overview shows destinations as ${JSON.stringify(outputs)}`);
  await noSecretsLeft("at the end");
  step("user checks passed");
}

async function sources() {
  const port = env.SRT_INPUT_PORT;
  const passphrase = "ui-passphrase-7c2e9a";
  step("log in as an admin and open Sources");
  await page.goto(base, { waitUntil: "domcontentloaded" });
  const role = await logIn(username, password);
  if (role !== "admin" && role !== "superadmin") throw new Error(`logged in as ${role}, the scenario needs an admin`);
  if (role === "admin" && (await visible("nav-users"))) throw new Error("an admin sees Users");
  await liveUpdates();
  await page.click('[data-testid="nav-sources"]');
  await until(`sources of ${channelId}`, 10000, () => visible(`sources-channel-${channelId}`));

  step("add an SRT input with the form the schema makes");
  await page.click(`[data-testid="add-input-${channelId}"]`);
  await until("input types loaded", 10000, () => visible("field-id"));
  const types = await page.$$eval('[data-testid="input-type"] option', (options) => options.map((o) => o.value));
  if (!types.includes("srt")) throw new Error(`the type picker offers ${types.join(", ")}, not srt`);
  await page.selectOption('[data-testid="input-type"]', "srt");
  await until("SRT fields", 5000, () => visible("field-passphrase"));
  const kinds = await page.evaluate(() => Object.fromEntries(
    [...document.querySelectorAll("#input-fields [data-testid^='field-']")].map((f) => [f.name, f.type])));
  if (kinds.passphrase !== "password") throw new Error(`the passphrase field is ${kinds.passphrase}, not a password field (writeOnly)`);
  if (kinds.latency_ms !== "number") throw new Error(`latency_ms is ${kinds.latency_ms}, not a number field`);
  await page.fill('[data-testid="field-id"]', "cam2");
  if (kinds.role === "select-one") await page.selectOption('[data-testid="field-role"]', "backup");
  await page.fill('[data-testid="field-listen"]', `0.0.0.0:${port}`);
  await page.fill('[data-testid="field-latency_ms"]', "200");
  secrets.add(passphrase);
  await page.fill('[data-testid="field-passphrase"]', passphrase);
  if (kinds.stream_id) await page.fill('[data-testid="field-stream_id"]', "ui-cam2");
  await page.click('[data-testid="input-save"]');
  const row = `sources-input-${channelId}-cam2`;
  await until("cam2 listed", 10000, async () => {
    if (await visible(row)) return true;
    const problem = await text("input-message");
    if (problem) throw new Error(`${problem} ${await text("input-problems")}`);
    return false;
  });
  const listed = await text(row);
  for (const expected of [String(port), "passphrase", "set"]) {
    if (!listed.includes(expected)) throw new Error(`cam2's row lacks ${expected}: ${listed}`);
  }
  const saved = (await api(`/api/v1/channels/${channelId}`)).inputs.find((i) => i.id === "cam2");
  if (!saved || !saved.config || saved.config.passphrase_set !== true || saved.config.latency_ms !== 200) {
    throw new Error(`the API shows cam2 as ${JSON.stringify(saved && saved.config)}`);
  }
  await noSecretsLeft("after adding the SRT input");
  await page.screenshot({ path: join(pictures, "sources.png"), fullPage: true });

  step("edit cam2 without retyping the passphrase: it stays set");
  await page.click(`[data-testid="edit-input-${channelId}-cam2"]`);
  await until("edit form", 5000, () => visible("field-latency_ms"));
  if ((await page.inputValue('[data-testid="field-passphrase"]')) !== "") throw new Error("the edit form shows the passphrase");
  await page.fill('[data-testid="field-latency_ms"]', "250");
  await page.click('[data-testid="input-save"]');
  await until("edit saved", 10000, async () => {
    const problem = await text("input-message");
    if (problem) throw new Error(problem);
    const input = (await api(`/api/v1/channels/${channelId}`)).inputs.find((i) => i.id === "cam2");
    return input.config.latency_ms === 250 && input.config.passphrase_set === true;
  });
  await until("the edit shown", 5000, async () => (await text(row)).includes("250"));
  await noSecretsLeft("after editing the SRT input");

  step("add a test pattern through the same form: the engine's kinds need no UI code");
  await page.click(`[data-testid="add-input-${channelId}"]`);
  await until("input types loaded", 10000, () => visible("field-id"));
  const offered = await page.$$eval('[data-testid="input-type"] option', (options) => options.map((o) => o.value));
  for (const kind of ["file", "test_pattern"]) {
    if (!offered.includes(kind)) throw new Error(`the type picker offers ${offered.join(", ")}, not ${kind}`);
  }
  await page.selectOption('[data-testid="input-type"]', "test_pattern");
  await until("pattern fields", 5000, () => visible("field-frame_rate"));
  const rates = await page.$$eval('[data-testid="field-frame_rate"] option', (options) => options.map((o) => o.value));
  if (!rates.includes("29.97")) throw new Error(`frame_rate offers ${rates.join(", ")}`);
  await page.fill('[data-testid="field-id"]', "bars");
  if (await visible("field-role")) await page.selectOption('[data-testid="field-role"]', "backup");
  await page.fill('[data-testid="field-width"]', "320");
  await page.fill('[data-testid="field-height"]', "180");
  await page.selectOption('[data-testid="field-frame_rate"]', "25");
  await page.fill('[data-testid="field-bitrate_kbps"]', "300");
  await page.click('[data-testid="input-save"]');
  await until("the pattern running", 15000, async () => {
    const problem = await text("input-message");
    if (problem) throw new Error(`${problem} ${await text("input-problems")}`);
    const bars = (await api(`/api/v1/channels/${channelId}`)).inputs.find((i) => i.id === "bars");
    return bars && bars.state === "connected" && bars.video && bars.video.width === 320;
  });
  await page.click(`[data-testid="remove-input-${channelId}-bars"]`);
  await confirmDialog("bars");
  await until("bars gone", 10000, async () => !(await visible(`sources-input-${channelId}-bars`)));

  if (env.RTMP_INPUT === "1") {
    step("add an RTMP input: its stream key is shown once, with the OBS settings");
    await page.click(`[data-testid="add-input-${channelId}"]`);
    await until("input types loaded", 10000, () => visible("field-id"));
    await page.selectOption('[data-testid="input-type"]', "rtmp");
    await page.fill('[data-testid="field-id"]', "obs-ui");
    if (await visible("field-role")) await page.selectOption('[data-testid="field-role"]', "backup");
    await page.click('[data-testid="input-save"]');
    await until("key shown once", 10000, () => visible("once"));
    const summary = await text("once-summary");
    if (!/^OBS: Server = rtmp:\/\/\S+, Stream key = \S+$/.test(summary)) throw new Error(`the OBS line reads ${JSON.stringify(summary)}`);
    const key = await text("once-value-stream-key");
    secrets.add(key);
    await until("obs-ui listed", 10000, () => visible(`sources-input-${channelId}-obs-ui`));

    step("a new key replaces it (asked first), shown once again");
    await page.click(`[data-testid="regen-key-${channelId}-obs-ui"]`);
    await confirmDialog("obs-ui");
    const fresh = await until("new key shown", 10000, async () => {
      const shown = await text("once-value-stream-key");
      return shown && shown !== key ? shown : null;
    });
    secrets.add(fresh);
    await page.click('[data-testid="once-dismiss"]');
    await until("box gone", 5000, async () => !(await visible("once")));
    await noSecretsLeft("after dismissing the stream key");

    step("remove it (asked first)");
    await page.click(`[data-testid="remove-input-${channelId}-obs-ui"]`);
    await confirmDialog("obs-ui");
    await until("obs-ui gone", 10000, async () => !(await visible(`sources-input-${channelId}-obs-ui`)));
  }
  await noSecretsLeft("at the end");
  step("sources checks passed");
}

async function users() {
  const name = env.NEW_USERNAME || "ui-operator";
  const newPassword = "ui-user-password-5f31";
  step("log in as a superadmin, straight to Users");
  await page.goto(`${base}/#/users`, { waitUntil: "domcontentloaded" });
  const role = await logIn(username, password);
  if (role !== "superadmin") throw new Error(`logged in as ${role}, the scenario needs a superadmin`);
  await until("users listed", 10000, () => visible(`user-${username}`));
  if (!(await visible("nav-users")) || !(await visible("nav-sources"))) throw new Error("a superadmin lacks Users or Sources");

  step(`add ${name} as a user`);
  secrets.add(newPassword);
  await page.fill('[data-testid="new-user-name"]', name);
  await page.selectOption('[data-testid="new-user-role"]', "user");
  await page.fill('[data-testid="new-user-password"]', newPassword);
  await page.click('[data-testid="new-user-save"]');
  await until(`${name} listed`, 10000, async () => {
    if (await visible(`user-${name}`)) return true;
    const message = await text("user-form-message");
    if (message && !message.startsWith("Added")) throw new Error(message);
    return false;
  });
  const shownRole = await page.inputValue(`[data-testid="user-role-${name}"]`);
  if (shownRole !== "user") throw new Error(`${name} is listed as ${shownRole}`);
  const listed = (await api("/api/v1/users")).find((u) => u.username === name);
  if (!listed || listed.role !== "user") throw new Error(`the API lists ${name} as ${JSON.stringify(listed)}`);
  await noSecretsLeft("after adding a user");
  await page.screenshot({ path: join(pictures, "users.png"), fullPage: true });

  step("an API token: shown once, works, gone when dismissed, refused once revoked");
  await page.click('[data-testid="nav-account"]');
  await page.fill('[data-testid="new-token-name"]', "ui-token");
  await page.click('[data-testid="new-token-save"]');
  await until("token shown once", 10000, () => visible("once"));
  const token = await text("once-value-token");
  secrets.add(token);
  const bearer = () => fetch(`${base}/api/v1/session`, { headers: { Authorization: `Bearer ${token}` } });
  const viaToken = await bearer();
  if (viaToken.status !== 200) throw new Error(`the token is refused: HTTP ${viaToken.status}`);
  await page.click('[data-testid="once-dismiss"]');
  await until("box gone", 5000, async () => !(await visible("once")));
  await noSecretsLeft("after dismissing the token");
  await until("token listed", 5000, () => visible("token-ui-token"));
  await page.click('[data-testid="revoke-token-ui-token"]');
  await confirmDialog("ui-token");
  await until("token gone", 5000, async () => !(await visible("token-ui-token")));
  const revoked = await bearer();
  if (revoked.status !== 401) throw new Error(`a revoked token gets HTTP ${revoked.status}`);
  await noSecretsLeft("at the end");
  step("users checks passed");
}

async function cloudPage() {
  const medialive = `/api/v1/channels/${channelId}/medialive`;
  step("log in as a superadmin, straight to the Cloud page");
  // moto models no MediaPackage origin endpoints: the page gets the box's own preview as the
  // playback URL, so the cloud player is checked on a real HLS stream.
  await page.route(`${base}${medialive}`, async (route) => {
    if (route.request().method() !== "GET") return route.continue();
    const response = await route.fetch();
    if (response.status() !== 200) return route.fulfill({ response });
    const view = await response.json();
    view.playback_url = `${base}/hls/${channelId}/index.m3u8`;
    return route.fulfill({ response, json: view });
  });
  await page.goto(`${base}/#/cloud/${channelId}`, { waitUntil: "domcontentloaded" });
  const role = await logIn(username, password);
  if (role !== "superadmin") throw new Error(`logged in as ${role}, the scenario needs a superadmin`);
  await until("nothing provisioned yet", 15000, async () => (await text("cloud-message")).includes("Nothing is provisioned"));
  if (!(await visible("cloud-form"))) throw new Error("a superadmin sees no provisioning form");

  step("provision edge RTMP from the form; the box feeds it");
  await page.selectOption('[data-testid="cloud-form-mode"]', "edge");
  await page.fill('[data-testid="cloud-form-idle"]', "30");
  await page.click('[data-testid="cloud-form-save"]');
  await until("provisioned and fed", 30000, async () => {
    const message = await text("cloud-form-message");
    if (message && !message.startsWith("Provision")) throw new Error(message);
    return (await visible("cloud-facts")) && (await text("cloud-state")) === "IDLE" && (await text("cloud-feed")).startsWith("live");
  });
  const mode = await text("cloud-mode");
  if (!mode.startsWith("edge, rtmp_push")) throw new Error(`the page shows mode ${JSON.stringify(mode)}`);
  const view = await api(medialive);
  if (view.setup.stop_after_idle_min !== 30) throw new Error(`stop_after_idle_min: ${JSON.stringify(view.setup)}`);

  step("start (confirmed): RUNNING, and for how long");
  await page.click('[data-testid="cloud-start"]');
  await confirmDialog("billed by the hour");
  await until("running", 30000, async () => (await text("cloud-state")) === "RUNNING" && /\d+ s|min/.test(await text("cloud-running")));

  step("the cloud preview plays");
  await until("cloud preview playing", 60000, async () => (await text("cloud-playback-state")) === "playing");
  const resolution = await text("cloud-playback-resolution");
  if (!/^\d+×\d+$/.test(resolution)) throw new Error(`cloud preview resolution ${JSON.stringify(resolution)}`);
  await page.screenshot({ path: join(pictures, "cloud.png"), fullPage: true });

  step("tear down (confirmed): nothing provisioned again");
  await page.click('[data-testid="cloud-teardown"]');
  await confirmDialog("Tear down");
  await until("torn down", 60000, async () => (await text("cloud-message")).includes("Nothing is provisioned"));
  step("cloud checks passed");
}

async function goLive() {
  const input = env.GOLIVE_INPUT;
  const hold = Number(env.GOLIVE_HOLD_S || 10) * 1000;
  const daemonInput = async () => {
    const channel = await api(`/api/v1/channels/${channelId}`);
    const found = channel.inputs.find((i) => i.id === input);
    if (!found) throw new Error(`the daemon has no input ${input}`);
    return found;
  };
  await page.goto(base, { waitUntil: "domcontentloaded" });
  await logIn(username, password);
  step("the Sources page links the WHIP input to its go-live page");
  await page.click('[data-testid="nav-sources"]');
  const link = `[data-testid="go-live-${channelId}-${input}"]`;
  await page.waitForSelector(link, { state: "visible", timeout: 10000 });
  await page.click(link);
  await until("the go-live page", 10000, async () => (await visible("golive-form")) && (await page.evaluate(() => location.hash)) === `#/golive/${channelId}/${input}`);
  step("quality settings: 1280×720, 30 fps, 2.5 Mbit/s; go live with the fake camera and microphone");
  await page.selectOption('[data-testid="golive-resolution"]', "1280x720");
  await page.selectOption('[data-testid="golive-fps"]', "30");
  await page.selectOption('[data-testid="golive-bitrate-choice"]', "2500");
  await page.click('[data-testid="golive-start"]');
  await until("the page says live", 30000, async () => {
    const problem = await text("golive-message");
    if (problem) throw new Error(`the page says: ${problem}`);
    return (await text("golive-state")) === "live";
  });
  await until("the page shows the bitrate sent", 15000, async () => /^[1-9]\d* kbit\/s$/.test(await text("golive-bitrate")));
  const preview = await page.evaluate(() => {
    const v = document.querySelector('[data-testid="golive-preview"]');
    return { width: v.videoWidth, height: v.videoHeight };
  });
  if (!preview.width || !preview.height) throw new Error(`the preview shows no picture: ${JSON.stringify(preview)}`);
  step(`live: preview ${preview.width}×${preview.height}, sending ${await text("golive-bitrate")}`);
  await until("the daemon shows the input connected with video", 20000, async () => {
    const i = await daemonInput();
    return i.state === "connected" && i.frames_total.video > 0 && i.frames_total.audio > 0;
  });
  await page.screenshot({ path: join(pictures, "golive.png"), fullPage: true });
  step(`staying live ${hold / 1000} s`);
  await new Promise((resolve) => setTimeout(resolve, hold));
  if ((await text("golive-state")) !== "live") throw new Error(`the connection is ${await text("golive-state")} after ${hold / 1000} s`);
  step("stop: the page ends the session (DELETE) and the daemon's input waits again");
  await page.click('[data-testid="golive-stop"]');
  await until("the page says stopped", 5000, async () => (await text("golive-state")) === "stopped");
  await until("the daemon's input is waiting", 10000, async () => (await daemonInput()).state === "waiting");
  step("golive checks passed");
}

let failed = false;
try {
  await { "first-run": firstRun, dashboard, user, sources, users, cloud: cloudPage, golive: goLive }[scenario]();
  if (pageErrors.length) throw new Error(`script errors in the page: ${pageErrors.join("; ")}`);
} catch (error) {
  failed = true;
  console.error(`[ui:${scenario}] FAILED: ${error.message}`);
} finally {
  await page.evaluate(() => window.scrollTo(0, 0)).catch(() => {});
  await page.screenshot({ path: screenshot, fullPage: true }).catch((e) => console.error(`[ui] screenshot: ${e.message}`));
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
