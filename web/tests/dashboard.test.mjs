// The dashboard in a real browser (Debian's chromium, driven by playwright-core). Started by
// the Rust integration test tests/it/ui.rs, which runs lunora, ffmpeg encoders and nginx-rtmp
// and passes their addresses in the environment:
//   LUNORA_URL      http://127.0.0.1:PORT  (the daemon; channel "program" with inputs main, backup)
//   RTMP_URL        rtmp://127.0.0.1:PORT/live  (nginx-rtmp, where the destination pushes)
//   SCREENSHOT      where to save the dashboard's picture
//   FIRST_RUN=1     the daemon runs the embedded default config with no encoder: only check
//                   that the page says "waiting for signal" and shows the ingest help
// Exits 0 when every check passes; otherwise prints what failed and exits 1.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const base = process.env.LUNORA_URL;
const rtmpUrl = process.env.RTMP_URL;
const screenshot = process.env.SCREENSHOT;
const secretKey = "ui-test-secret-4b1d";
const firstRun = process.env.FIRST_RUN === "1";
if (!base || (!rtmpUrl && !firstRun) || !screenshot) {
  console.error("set LUNORA_URL, RTMP_URL and SCREENSHOT");
  process.exit(2);
}

const step = (text) => console.log(`[ui] ${text}`);

async function api(path) {
  const response = await fetch(`${base}${path}`);
  if (!response.ok) throw new Error(`GET ${path}: HTTP ${response.status}`);
  return response.json();
}

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
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic", "--autoplay-policy=no-user-gesture-required",
  ],
  viewport: { width: 1280, height: 1400 },
});
const page = context.pages()[0] || (await context.newPage());
page.on("dialog", (dialog) => dialog.accept());
const pageErrors = [];
page.on("pageerror", (error) => pageErrors.push(error.message));

let failed = false;
try {
  step("open the dashboard");
  await page.goto(base, { waitUntil: "domcontentloaded" });
  await until("live updates connect", 10000, async () => (await page.textContent('[data-testid="connection"]')) === "live");
  if (firstRun) {
    await until("'waiting for signal' shown", 5000, () => page.isVisible('[data-testid="waiting"]'));
    const onAir = await page.textContent('[data-testid="on-air"]');
    if (!onAir.includes("waiting for signal")) throw new Error(`on air says ${JSON.stringify(onAir)}`);
    for (const id of ["main", "backup"]) {
      await until(`ingest help for ${id}`, 5000, () => page.isVisible(`[data-testid="ingest-${id}"]`));
    }
    const help = await page.textContent("#ingest");
    for (const expected of ["9000", "9001", "Latency (ms)", "OBS"]) {
      if (!help.includes(expected)) throw new Error(`ingest help lacks ${expected}: ${help}`);
    }
    step("first run checks passed");
  } else {
    await until("main on air", 20000, async () => (await page.textContent('[data-testid="on-air"]')) === "main");
    const waiting = await page.isVisible('[data-testid="waiting"]');
    if (waiting) throw new Error("'waiting for signal' still shown with encoders connected");
    for (const id of ["main", "backup"]) {
      await until(`ingest help for ${id}`, 5000, () => page.isVisible(`[data-testid="ingest-${id}"]`));
    }

    step("the player plays: currentTime advances at least 3 s");
    const start = await until("playback starts", 40000, async () => {
      const t = await page.$eval('[data-testid="video"]', (v) => v.currentTime);
      return t > 0 ? t : null;
    });
    await until("3 s of playback", 20000, async () => (await page.$eval('[data-testid="video"]', (v) => v.currentTime)) >= start + 3);
    const playback = await page.textContent('[data-testid="playback-state"]');
    if (playback !== "playing") throw new Error(`playback status says ${JSON.stringify(playback)}`);
    const resolution = await page.textContent("#playback-resolution");
    if (!resolution.includes("×")) throw new Error(`no resolution shown: ${resolution}`);

    step("force backup: the API and the page show it within 2 s");
    const clicked = Date.now();
    await page.click('[data-testid="force-backup"]');
    await until("API confirms backup", 2000, async () => (await api("/api/v1/channels/program")).active_input === "backup");
    await until("page shows backup", 2000 - (Date.now() - clicked) + 500, async () => (await page.textContent('[data-testid="on-air"]')) === "backup");
    console.log(`[ui] switch shown after ${Date.now() - clicked} ms`);
    await page.click('[data-testid="force-auto"]');
    await until("back to main", 10000, async () => (await api("/api/v1/channels/program")).active_input === "main");

    step("add a destination; the key is never shown again");
    await page.fill('[data-testid="dest-id"]', "nginx");
    await page.selectOption('[data-testid="dest-preset"]', "custom");
    await page.fill('[data-testid="dest-url"]', rtmpUrl);
    await page.fill('[data-testid="dest-key"]', secretKey);
    await page.click('[data-testid="dest-save"]');
    await until("saved", 5000, async () => (await page.textContent('[data-testid="dest-message"]')).startsWith("Saved"));
    await until("destination listed", 5000, () => page.isVisible('[data-testid="output-nginx"]'));
    const leaks = async () => page.evaluate((key) => {
      const inputs = [...document.querySelectorAll("input")].some((i) => i.value.includes(key));
      return inputs || document.documentElement.outerHTML.includes(key) || document.body.innerText.includes(key);
    }, secretKey);
    if (await leaks()) throw new Error("the stream key is visible in the page after saving");

    step("start and stop it against nginx-rtmp");
    await page.click('[data-testid="start-nginx"]');
    await until("destination live (page)", 15000, async () => (await page.textContent('[data-testid="state-nginx"]')).startsWith("live"));
    const live = (await api("/api/v1/channels/program")).outputs.find((o) => o.id === "nginx");
    if (live.state !== "live") throw new Error(`API says ${live.state}`);
    await page.click('[data-testid="stop-nginx"]');
    await until("destination idle", 10000, async () => (await page.textContent('[data-testid="state-nginx"]')).startsWith("idle"));

    step("edit it without retyping the key");
    await page.click('[data-testid="edit-nginx"]');
    const keyField = await page.inputValue('[data-testid="dest-key"]');
    if (keyField !== "") throw new Error("the edit form shows the saved key");
    await page.click('[data-testid="dest-save"]');
    await until("edit saved", 5000, async () => (await page.textContent('[data-testid="dest-message"]')).startsWith("Saved"));
    if (await leaks()) throw new Error("the stream key is visible in the page after editing");
    step("all checks passed");
  }
  if (pageErrors.length) throw new Error(`script errors in the page: ${pageErrors.join("; ")}`);
} catch (error) {
  failed = true;
  console.error(`[ui] FAILED: ${error.message}`);
} finally {
  await page.evaluate(() => window.scrollTo(0, 0)).catch(() => {});
  await page.screenshot({ path: screenshot, fullPage: true }).catch((e) => console.error(`[ui] screenshot: ${e.message}`));
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
