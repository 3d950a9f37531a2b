// Lunora Edge dashboard: live status over Server-Sent Events, switching, destinations, the
// HLS preview and ingest help. No framework; every string from the server goes in through
// textContent, never as HTML.

const state = {
  channels: [],
  channel: null,            // selected channel id
  system: { addresses: [] },
  bitrates: new Map(),      // "channel/input" -> last 60 input bitrates (bit/s)
  outputRates: new Map(),   // "channel/output" -> { bytes, at, bps }
  editing: null,            // destination id being edited
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

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await response.json(); } catch { /* empty body */ }
  if (!response.ok) throw new Error(data && data.error ? data.error : `${method} ${path}: HTTP ${response.status}`);
  return data;
}

function currentChannel() {
  return state.channels.find((c) => c.id === state.channel) || null;
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

// ---- copy to clipboard (works on plain http too, where navigator.clipboard is missing) ----

async function copy(text, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const area = el("textarea", { style: "position:fixed;opacity:0" });
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  const label = button.textContent;
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = label; }, 1200);
}

function copyRow(label, value) {
  const button = el("button", { type: "button", onclick: (e) => copy(value, e.currentTarget) }, "Copy");
  return el("div", { class: "copy-row" }, el("span", { class: "muted" }, `${label}:`), el("code", {}, value), button);
}

// ---- dashboard ---------------------------------------------------------------------------

function renderChannelPicker() {
  const select = $("#channel");
  const ids = state.channels.map((c) => c.id);
  if (select.options.length !== ids.length || ids.some((id, i) => select.options[i].value !== id)) {
    select.replaceChildren(...ids.map((id) => el("option", { value: id }, id)));
  }
  if (!state.channel || !ids.includes(state.channel)) state.channel = ids[0] || null;
  select.value = state.channel || "";
  select.closest("label").hidden = ids.length < 2;
}

function healthPill(input) {
  const tone = { healthy: "ok", degraded: "warn", lost: "bad" }[input.health.state] || "muted";
  return [pill(input.health.state || "unknown", tone), input.health.reasons.length ? el("span", { class: "reasons" }, input.health.reasons.join(", ").replaceAll("_", " ")) : null];
}

function tr101290(input) {
  const errors = Object.entries(input.tr101290 || {}).filter(([, n]) => n > 0);
  if (!errors.length) return el("span", { class: "muted" }, "no errors");
  return el("span", { class: "error" }, errors.map(([name, n]) => `${name.replaceAll("_", " ")} ${n}`).join(", "));
}

function renderDashboard(channel) {
  const connected = channel.inputs.some((i) => i.state === "connected");
  $("#waiting").hidden = connected || Boolean(channel.active_input);
  $("#on-air").textContent = channel.active_input || "nothing (waiting for signal)";
  $("#forced").hidden = !channel.forced_input;

  const buttons = channel.inputs.map((input) => {
    const sameRole = channel.inputs.filter((i) => i.role === input.role).length > 1;
    const label = `Force ${input.role}${sameRole ? ` (${input.id})` : ""}`;
    return el("button", {
      type: "button",
      class: channel.forced_input === input.id ? "active" : "",
      "data-testid": `force-${input.id}`,
      onclick: () => switchTo(channel.id, input.id),
    }, label);
  });
  buttons.push(el("button", { type: "button", class: channel.forced_input ? "" : "active", "data-testid": "force-auto", onclick: () => switchTo(channel.id, "auto") }, "Auto"));
  $("#switch-buttons").replaceChildren(...buttons);

  $("#inputs tbody").replaceChildren(...channel.inputs.map((input) => {
    const key = `${channel.id}/${input.id}`;
    const history = state.bitrates.get(key) || [];
    const srt = input.srt || {};
    const sent = (srt.packets_received || 0) + (srt.packets_lost || 0);
    const loss = sent ? `${((100 * (srt.packets_lost || 0)) / sent).toFixed(2)} %` : "—";
    const onAir = channel.active_input === input.id;
    return el("tr", { "data-testid": `input-${input.id}` },
      el("td", {}, el("strong", {}, input.id), " ", onAir ? pill("on air", "ok") : null, el("div", { class: "muted" }, `${input.type} ${input.listen}`)),
      el("td", {}, input.role),
      el("td", {}, input.state === "connected" ? pill("connected", "ok") : pill("waiting", "muted"), input.peer ? el("div", { class: "muted" }, input.peer) : null),
      el("td", {}, healthPill(input)),
      el("td", {}, formatBitrate(input.bitrate_bps), sparkline(history)),
      el("td", {}, input.type === "srt" && input.state === "connected" ? `${(srt.rtt_ms || 0).toFixed(1)} ms / ${loss}` : "—"),
      el("td", {}, tr101290(input)));
  }));

  const switches = [...channel.switches].reverse();
  $("#switches").replaceChildren(...(switches.length ? switches.map((s) => el("li", {},
    el("strong", {}, formatTime(s.at)), ` ${s.from || "—"} → ${s.to}: ${s.reason.replaceAll("_", " ")}`,
    el("span", { class: "muted" }, ` (gap ${s.gap_ms} ms${s.detection_ms != null ? `, detected in ${s.detection_ms} ms` : ""})`))) : [el("li", { class: "muted" }, "none yet")]));
}

async function switchTo(channel, input) {
  try {
    await api("POST", `/api/v1/channels/${encodeURIComponent(channel)}/switch`, { input });
  } catch (error) {
    alert(error.message);
  }
}

// ---- destinations ------------------------------------------------------------------------

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
    await api("POST", `/api/v1/channels/${encodeURIComponent(channel)}/outputs/${encodeURIComponent(output)}/${action}`);
  } catch (error) {
    alert(error.message);
  }
}

async function removeDestination(channel, output) {
  if (!confirm(`Remove destination ${output}? It stops at once.`)) return;
  try {
    await api("DELETE", `/api/v1/channels/${encodeURIComponent(channel)}/outputs/${encodeURIComponent(output)}`);
  } catch (error) {
    alert(error.message);
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
  const id = form.elements.output_id.value.trim();
  try {
    if (state.editing) {
      await api("PUT", `/api/v1/channels/${encodeURIComponent(channel)}/outputs/${encodeURIComponent(id)}`, spec);
    } else {
      await api("POST", `/api/v1/channels/${encodeURIComponent(channel)}/outputs`, { id, ...spec });
    }
    resetForm();
    message.textContent = `Saved ${id}.`;
  } catch (error) {
    message.textContent = error.message;
  } finally {
    // The key leaves the page as soon as it has been sent, whatever the answer.
    form.stream_key.value = "";
  }
}

// ---- ingest help -------------------------------------------------------------------------

function boxHost() {
  const here = location.hostname;
  const local = ["localhost", "127.0.0.1", "::1", "[::1]"].includes(here);
  return local && state.system.addresses.length ? state.system.addresses[0] : here;
}

function renderIngest(channel) {
  const host = boxHost();
  const blocks = channel.inputs.map((input) => {
    const port = input.listen.split(":").pop();
    const ingest = input.ingest || {};
    if (input.type === "rtmp") {
      return el("div", { class: "ingest-block", "data-testid": `ingest-${input.id}` },
        el("h3", {}, `OBS → ${input.id} (${input.role})`),
        el("p", { class: "muted" }, "Settings → Stream: Service “Custom…”, then:"),
        copyRow("Server", `rtmp://${host}:${port}/${ingest.rtmp_app || "live"}`),
        el("div", { class: "copy-row" }, el("span", { class: "muted" }, "Stream key:"), el("span", {}, `the stream_key of input “${input.id}” in the config file (not shown here)`)),
        el("p", { class: "muted" }, "Output: x264 or hardware H.264, keyframe interval 1–2 s, AAC 48 kHz."));
    }
    const url = `srt://${host}:${port}?mode=caller&latency=${(ingest.latency_ms || 120) * 1000}${ingest.stream_id ? `&streamid=${encodeURIComponent(ingest.stream_id)}` : ""}`;
    return el("div", { class: "ingest-block", "data-testid": `ingest-${input.id}` },
      el("h3", {}, `Videon (SRT caller) → ${input.id} (${input.role})`),
      copyRow("Host", host),
      copyRow("Port", port),
      copyRow("Latency (ms)", String(ingest.latency_ms || 120)),
      el("div", { class: "copy-row" }, el("span", { class: "muted" }, "Passphrase:"), el("span", {}, ingest.passphrase_set ? "set in the config file (not shown here); use the same on the encoder" : "none")),
      ingest.stream_id ? copyRow("Stream ID", ingest.stream_id) : el("div", { class: "copy-row" }, el("span", { class: "muted" }, "Stream ID:"), el("span", {}, "none")),
      copyRow("Full URL (ffmpeg, srt-live-transmit)", url));
  });
  if (!channel.inputs.some((i) => i.type === "rtmp")) {
    const snippet = `[[channels.inputs]]\nid = "obs"\nrole = "backup"\ntype = "rtmp"\nstream_key = "\${OBS_STREAM_KEY}"`;
    blocks.push(el("div", { class: "ingest-block" },
      el("h3", {}, "OBS"),
      el("p", { class: "muted" }, "This channel has no RTMP input yet. Add one to the config to take OBS on rtmp://HOST:1935/live:"),
      copyRow("Config", snippet)));
  }
  $("#ingest-body").replaceChildren(...blocks);
}

// ---- player ------------------------------------------------------------------------------

const player = { hls: null, channel: null, lastTime: 0, lastProgress: performance.now(), bitrate: 0, retry: null };

function setPlayback(text) {
  $("#playback-state").textContent = text;
}

function startPlayer(channel) {
  if (player.channel === channel && (player.hls || player.native)) return;
  stopPlayer();
  player.channel = channel;
  const video = $("#video");
  const url = `/hls/${encodeURIComponent(channel)}/index.m3u8`;
  if (window.Hls && window.Hls.isSupported()) {
    const hls = new window.Hls({ liveSyncDurationCount: 3, manifestLoadingMaxRetry: Infinity, levelLoadingMaxRetry: Infinity, fragLoadingMaxRetry: 6 });
    hls.on(window.Hls.Events.FRAG_LOADED, (_, data) => {
      const bytes = (data.frag.stats && data.frag.stats.loaded) || (data.payload && data.payload.byteLength) || 0;
      if (bytes && data.frag.duration > 0) player.bitrate = (bytes * 8) / data.frag.duration;
    });
    hls.on(window.Hls.Events.ERROR, (_, data) => {
      if (!data.fatal) return;
      // Most often: no segments yet (waiting for signal). Start over in a moment.
      setPlayback(`waiting for the preview (${data.details})`);
      stopPlayer();
      player.retry = setTimeout(() => startPlayer(channel), 2000);
    });
    hls.loadSource(url);
    hls.attachMedia(video);
    player.hls = hls;
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = url;
    player.native = true;
  } else {
    setPlayback("this browser cannot play HLS");
    return;
  }
  video.play().catch(() => { /* autoplay waits for the first segment */ });
}

function stopPlayer() {
  clearTimeout(player.retry);
  if (player.hls) player.hls.destroy();
  player.hls = null;
  player.native = false;
}

function updatePlayback() {
  const video = $("#video");
  const now = performance.now();
  if (video.currentTime !== player.lastTime) {
    player.lastTime = video.currentTime;
    player.lastProgress = now;
  }
  if (player.hls || player.native) {
    if (video.paused) setPlayback(video.currentTime > 0 ? "paused" : "waiting for the preview");
    else if (now - player.lastProgress > 3000) setPlayback("stalled");
    else if (video.readyState < 3) setPlayback("buffering");
    else setPlayback("playing");
  }
  const latency = player.hls && Number.isFinite(player.hls.latency) ? player.hls.latency : null;
  $("#playback-latency").textContent = latency != null && latency > 0 ? `${latency.toFixed(1)} s` : "—";
  $("#playback-bitrate").textContent = formatBitrate(player.bitrate);
  $("#playback-resolution").textContent = video.videoWidth ? `${video.videoWidth}×${video.videoHeight}` : "—";
  const quality = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
  $("#playback-dropped").textContent = quality ? `${quality.droppedVideoFrames} of ${quality.totalVideoFrames}` : "—";
  video.dataset.currentTime = video.currentTime.toFixed(2);
}

// ---- live updates ------------------------------------------------------------------------

function render() {
  renderChannelPicker();
  const channel = currentChannel();
  if (!channel) return;
  renderDashboard(channel);
  renderDestinations(channel);
  renderIngest(channel);
  startPlayer(channel.id);
}

function onStatus(channels) {
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
  render();
}

function connect() {
  const events = new EventSource("/api/v1/events");
  const connection = $("#connection");
  events.addEventListener("open", () => { connection.textContent = "live"; connection.className = "pill pill-ok"; });
  events.addEventListener("error", () => { connection.textContent = "reconnecting…"; connection.className = "pill pill-warn"; });
  events.addEventListener("status", (event) => onStatus(JSON.parse(event.data)));
}

function init() {
  $("#channel").addEventListener("change", (event) => { state.channel = event.target.value; render(); });
  const form = $("#destination-form");
  form.addEventListener("submit", saveDestination);
  form.preset.addEventListener("change", showPresetFields);
  $("#form-cancel").addEventListener("click", resetForm);
  $("#start-all").addEventListener("click", () => state.channel && api("POST", `/api/v1/channels/${encodeURIComponent(state.channel)}/outputs/start-all`).catch((e) => alert(e.message)));
  $("#stop-all").addEventListener("click", () => state.channel && api("POST", `/api/v1/channels/${encodeURIComponent(state.channel)}/outputs/stop-all`).catch((e) => alert(e.message)));
  showPresetFields();
  api("GET", "/api/v1/system").then((system) => { state.system = system; render(); }).catch(() => {});
  setInterval(updatePlayback, 500);
  connect();
}

init();
