//! Harness: the daemon under test, peer processes, ports, HTTP and media helpers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub use nix::sys::signal::Signal;
use serde_json::Value;

/// Signals the process group led by `pid` (every child here is spawned as a group leader).
fn signal_group(pid: u32, signal: Signal) {
    let Ok(pid) = i32::try_from(pid) else { return };
    if pid > 1 {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), signal);
    }
}

/// Path of a peer binary, or a loud failure naming the package that provides it.
pub fn require(binary: &str, package: &str) -> PathBuf {
    find(binary).unwrap_or_else(|| panic!(
        "peer binary `{binary}` is missing: install the Debian package `{package}` (bash .ci/run does)"
    ))
}

/// `binary` on the PATH, if it is there.
pub fn find(binary: &str) -> Option<PathBuf> {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|dir| Path::new(dir).join(binary))
        .find(|candidate| candidate.is_file())
}

/// `target/<profile>` of the build running this test (wherever `CARGO_TARGET_DIR` put it):
/// the test executable is `target/<profile>/deps/it-<hash>`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .expect("target dir")
}

/// The cargo target directory of this build (`target/`, or `CARGO_TARGET_DIR`): tools the test
/// script installs for the suite (the schemathesis virtual environment) live there.
pub fn target_dir() -> PathBuf {
    let profile = profile_dir();
    profile.parent().map(Path::to_path_buf).unwrap_or(profile)
}

/// The `lunora` binary built from this workspace.
pub fn lunora_bin() -> PathBuf {
    if let Ok(path) = std::env::var("LUNORA_BIN") {
        return PathBuf::from(path);
    }
    let bin = profile_dir().join("lunora");
    assert!(
        bin.is_file(),
        "{} not found: run `cargo build --bins` first (the README test command does)",
        bin.display()
    );
    bin
}

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free UDP port")
}

pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free TCP port")
}

/// Polls `check` every 100 ms until it holds or `timeout` passes.
pub fn wait_for(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    check()
}

/// A child process killed (with its process group) when dropped. Its stdin is closed unless
/// it was spawned with [`Proc::spawn_with_stdin`].
pub struct Proc {
    child: Child,
    stderr_path: PathBuf,
}

impl Proc {
    /// Spawns `command` with stdout discarded and stderr captured to a file in `dir`.
    pub fn spawn(name: &str, dir: &Path, command: &mut Command) -> Proc {
        Self::start(name, dir, command.stdin(Stdio::null()))
    }

    fn start(name: &str, dir: &Path, command: &mut Command) -> Proc {
        use std::os::unix::process::CommandExt;
        let stderr_path = dir.join(format!("{name}.stderr"));
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let child = command
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc { child, stderr_path }
    }

    /// Like [`Proc::spawn`] but with a pipe to the child's stdin.
    pub fn spawn_with_stdin(
        name: &str,
        dir: &Path,
        command: &mut Command,
    ) -> (Proc, std::process::ChildStdin) {
        let mut proc = Proc::start(name, dir, command.stdin(Stdio::piped()));
        let stdin = proc.child.stdin.take().expect("piped stdin");
        (proc, stdin)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Waits up to `timeout` for exit.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a signal to the process group this child leads (ffmpeg finalises its output on
    /// SIGINT). Never a shell `kill`: procps `kill -SIG -PGID` argument parsing is too easy to
    /// get wrong, and a wrong target there is every process we own.
    pub fn signal(&self, signal: Signal) {
        signal_group(self.child.id(), signal);
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.running() {
            self.signal(Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// Runs a command to completion with a time limit.
pub fn run(name: &str, command: &mut Command, timeout: Duration) -> Output {
    use std::os::unix::process::CommandExt;
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let pid = child.id();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let killer = std::thread::spawn(move || {
        if finished.recv_timeout(timeout).is_err() {
            signal_group(pid, Signal::SIGKILL);
        }
    });
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let _ = done.send(());
    let _ = killer.join();
    output
}

/// Config for channel `program` in single mode: one SRT input `input_id` on 127.0.0.1:`port`
/// (extra keys for it in `input_extra`), then `outputs` (TOML tables) as given.
pub fn single_srt_channel(input_id: &str, port: u16, input_extra: &str, outputs: &str) -> String {
    format!(
        "[[channels]]\nid = \"program\"\nmode = \"single\"\n\n[channels.failover]\ninput_loss_ms = 500\n\n\
         [[channels.inputs]]\nid = \"{input_id}\"\ntype = \"srt\"\nlisten = \"127.0.0.1:{port}\"\nlatency_ms = 200\n{input_extra}\n\n{outputs}\n"
    )
}

/// Channel "program" in main-backup mode: SRT inputs `main` and `backup` on loopback,
/// `input_loss_ms = 500` plus `failover_extra` lines, then `outputs`.
pub fn main_backup_channel(main: u16, backup: u16, failover_extra: &str, outputs: &str) -> String {
    format!(
        "[[channels]]\nid = \"program\"\nmode = \"main-backup\"\n\n[channels.failover]\ninput_loss_ms = 500\n{failover_extra}\n\
         [[channels.inputs]]\nid = \"main\"\nrole = \"main\"\ntype = \"srt\"\nlisten = \"127.0.0.1:{main}\"\nlatency_ms = 200\n\n\
         [[channels.inputs]]\nid = \"backup\"\nrole = \"backup\"\ntype = \"srt\"\nlisten = \"127.0.0.1:{backup}\"\nlatency_ms = 200\n\n{outputs}\n"
    )
}

/// An ffmpeg SRT caller pushing `file` in real time to an SRT input on loopback `port`.
pub fn srt_push(dir: &Path, name: &str, file: &Path, port: u16) -> Proc {
    ffmpeg_push(
        dir,
        name,
        file,
        &format!("srt://127.0.0.1:{port}?latency=200000&pkt_size=1316"),
    )
}

/// Fails if ffmpeg, reading a live output, complained about timestamps, continuity or data.
pub fn assert_reader_saw_a_clean_stream(log: &str) {
    for bad in [
        "Non-monotonic",
        "non monotonically",
        "corrupt",
        "Continuity",
        "continuity",
        "Invalid",
    ] {
        assert!(
            !log.contains(bad),
            "ffmpeg reading the live output said {bad:?}:\n{log}"
        );
    }
}

/// ffprobe's `codec_name,width,height` lines for the streams of a file or URL.
pub fn probe_streams(target: &str) -> String {
    let ffprobe = require("ffprobe", "ffmpeg");
    // A daemon's HLS preview needs its token, as a player outside the dashboard would send it.
    let port = target
        .strip_prefix("http://127.0.0.1:")
        .and_then(|rest| rest.split('/').next())
        .and_then(|port| port.parse().ok());
    let headers: Vec<String> = port
        .and_then(token_for)
        .map(|t| vec!["-headers".into(), format!("Authorization: Bearer {t}\r\n")])
        .unwrap_or_default();
    let out = run(
        "ffprobe (streams)",
        Command::new(ffprobe)
            .args(headers)
            .args([
                "-v",
                "error",
                "-show_entries",
                "stream=codec_name,width,height",
                "-of",
                "csv=p=0",
            ])
            .arg(target),
        Duration::from_secs(30),
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// An SRT listener output section, for receivers to pull the channel from.
pub fn srt_listener_output(id: &str, port: u16) -> String {
    format!(
        "[[channels.outputs]]\nid = \"{id}\"\ntype = \"srt\"\nmode = \"listener\"\nlisten = \"127.0.0.1:{port}\"\nlatency_ms = 200\n"
    )
}

/// The first superadmin's password in every daemon the tests start.
pub const ADMIN_PASSWORD: &str = "it-admin-password";

/// API tokens of the daemons under test, by HTTP port: the request helpers send them, so a
/// test reads like an operator's script with a token.
static TOKENS: std::sync::Mutex<Vec<(u16, String)>> = std::sync::Mutex::new(Vec::new());

fn token_for(port: u16) -> Option<String> {
    TOKENS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|(p, _)| *p == port)
        .map(|(_, t)| t.clone())
}

/// Logs in as `user` and returns the session cookie (`lunora_session=…`).
pub fn login(port: u16, user: &str, password: &str) -> String {
    let body = format!("{{\"username\":\"{user}\",\"password\":\"{password}\"}}");
    let response = raw_request(
        port,
        &format!(
            "POST /api/v1/session HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    response
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .and_then(|c| c.split(';').next())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("login as {user} failed: {response}"))
}

/// A bearer token for `user` (made with their session).
pub fn create_token(port: u16, cookie: &str, name: &str) -> String {
    let body = format!("{{\"name\":\"{name}\"}}");
    let response = raw_request(
        port,
        &format!(
            "POST /api/v1/tokens HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nCookie: {cookie}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    let json = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| dechunk(b))
        .unwrap_or_default();
    let value: Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("token: {e}: {response}"));
    value["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token in {value}"))
        .to_string()
}

/// The daemon under test, on its own ports and temp dir.
/// A test's config with the harness's `[http]`, and the slate off unless the test sets one:
/// most tests watch what happens when every input is gone, which the slate would fill.
fn with_harness_sections(http: u16, config: &str) -> String {
    let slate = if config.contains("[slate]") || config.contains("[channels.slate]") {
        ""
    } else {
        "[slate]\nenabled = false\n\n"
    };
    // Last: a test's config may go on with `[http]` keys.
    format!("[http]\nlisten = \"127.0.0.1:{http}\"\n\n{config}\n\n{slate}")
}

pub struct Daemon {
    pub http: u16,
    pub dir: tempfile::TempDir,
    process: Proc,
}

impl Daemon {
    /// Starts `lunora run` with `config` (its `[http]` section is supplied here) and waits for
    /// `/readyz`.
    pub fn start(config: &str) -> Daemon {
        Self::start_with_env(config, tempfile::tempdir().expect("temp dir"), &[])
    }

    /// Like [`Daemon::start`], in `dir`, with extra environment variables.
    pub fn start_with_env(
        config: &str,
        dir: tempfile::TempDir,
        env: &[(&str, &std::path::Path)],
    ) -> Daemon {
        let http = free_tcp_port();
        let path = dir.path().join("lunora.toml");
        std::fs::write(&path, with_harness_sections(http, config)).expect("write config");
        Self::launch(http, dir, env)
    }

    /// Stops the daemon (SIGTERM) and starts it again with the same config and state directory.
    pub fn restart(self) -> Daemon {
        self.restart_after(Signal::SIGTERM)
    }

    /// Ends the daemon with `signal` (SIGKILL: a crash) and starts it again on the same state.
    pub fn restart_after(self, signal: Signal) -> Daemon {
        self.restart_with_env(signal, &[])
    }

    /// [`Daemon::restart_after`] with extra environment variables, as in
    /// [`Daemon::start_with_env`].
    pub fn restart_with_env(self, signal: Signal, env: &[(&str, &std::path::Path)]) -> Daemon {
        let Daemon {
            http,
            dir,
            mut process,
        } = self;
        process.signal(signal);
        process
            .wait(Duration::from_secs(10))
            .expect("lunora ends within 10 s");
        Self::launch(http, dir, env)
    }

    /// Sends `signal` to the daemon (SIGHUP: re-read the config file).
    pub fn signal(&self, signal: Signal) {
        self.process.signal(signal);
    }

    /// Rewrites the config file (its `[http]` section is kept as the harness wrote it).
    pub fn rewrite_config(&self, config: &str) {
        std::fs::write(
            self.dir.path().join("lunora.toml"),
            with_harness_sections(self.http, config),
        )
        .expect("write config");
    }

    fn launch(http: u16, dir: tempfile::TempDir, env: &[(&str, &std::path::Path)]) -> Daemon {
        let mut command = Command::new(lunora_bin());
        command
            .arg("run")
            .arg("--config")
            .arg(dir.path().join("lunora.toml"))
            .env_remove("RUST_LOG")
            .env("LUNORA_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("LUNORA_STATE_DIR", dir.path().join("state"));
        for (key, value) in env {
            command.env(key, value);
        }
        let process = Proc::spawn("lunora", dir.path(), &mut command);
        let mut daemon = Daemon { http, dir, process };
        let ready = wait_for(Duration::from_secs(20), || daemon.get("/readyz").0 == 200);
        assert!(ready, "lunora did not become ready; log:\n{}", daemon.log());
        assert!(daemon.process.running());
        // A restarted daemon keeps its token; a new one on a port an earlier daemon used
        // gets its own.
        if http_get(http, "/api/v1/session").0 != 200 {
            let cookie = login(http, "admin", ADMIN_PASSWORD);
            let token = create_token(http, &cookie, "tests");
            let mut tokens = TOKENS.lock().unwrap_or_else(|p| p.into_inner());
            tokens.retain(|(port, _)| *port != http);
            tokens.push((http, token));
        }
        daemon
    }

    /// The `Authorization` header line the request helpers send to this daemon.
    pub fn auth_header(&self) -> String {
        token_for(self.http).map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"))
    }

    pub fn log(&self) -> String {
        self.process.stderr()
    }

    pub fn alive(&mut self) -> bool {
        self.process.running() && self.get("/healthz").0 == 200
    }

    /// HTTP GET on the daemon: (status, body). Status 0 when the connection failed.
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.http, path)
    }

    pub fn json(&self, path: &str) -> Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// `/api/v1/channels/{channel}` → the named input's JSON.
    pub fn input(&self, channel: &str, input: &str) -> Value {
        self.channel_entry(channel, "inputs", input)
    }

    pub fn output(&self, channel: &str, output: &str) -> Value {
        self.channel_entry(channel, "outputs", output)
    }

    fn channel_entry(&self, channel: &str, list: &str, id: &str) -> Value {
        let c = self.json(&format!("/api/v1/channels/{channel}"));
        c[list]
            .as_array()
            .and_then(|a| a.iter().find(|entry| entry["id"] == id))
            .cloned()
            .unwrap_or_else(|| panic!("channel {channel} has no {list} entry {id:?}: {c}"))
    }

    pub fn stop(mut self) -> ExitStatus {
        self.process.signal(Signal::SIGTERM);
        self.process
            .wait(Duration::from_secs(10))
            .expect("lunora stops within 10 s of SIGTERM")
    }
}

pub fn http_get(port: u16, path: &str) -> (u16, String) {
    http_request(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
    )
}

/// The `Authorization` line for a daemon on `port`, when the harness holds a token for it.
fn authorization(port: u16) -> String {
    token_for(port).map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"))
}

/// Sends `request` as written (no token added): (status, body).
pub fn http_anonymous(port: u16, request: &str) -> (u16, String) {
    let response = raw_request(port, request);
    split_response(&response)
}

pub fn http_post_json(port: u16, path: &str, body: &str) -> (u16, String) {
    http_send(port, "POST", path, body)
}

/// Any method with a JSON body: (status, body).
pub fn http_send(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    http_request(
        port,
        &format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// GET with a binary body (HLS segments): (status, body, headers).
pub fn http_get_bytes(port: u16, path: &str) -> (u16, Vec<u8>, String) {
    let Ok(mut stream) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))
    else {
        return (0, Vec::new(), String::new());
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{}Connection: close\r\n\r\n",
        authorization(port)
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return (0, Vec::new(), String::new());
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let Some(split) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return (0, Vec::new(), String::new());
    };
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response[split + 4..].to_vec(), head)
}

fn http_request(port: u16, request: &str) -> (u16, String) {
    // The token goes right after the request line.
    let request = match request.split_once("\r\n") {
        Some((line, rest)) => format!("{line}\r\n{}{rest}", authorization(port)),
        None => request.to_string(),
    };
    split_response(&raw_request(port, &request))
}

/// The whole response text ("" when the connection failed).
pub fn raw_request(port: u16, request: &str) -> String {
    let Ok(mut stream) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))
    else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream.write_all(request.as_bytes()).is_err() {
        return String::new();
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

fn split_response(response: &str) -> (u16, String) {
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, dechunk(&body))
}

/// Undoes `Transfer-Encoding: chunked` when present (axum streams some bodies).
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return body.to_string();
        };
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_string();
        };
        if size == 0 {
            return out;
        }
        let Some(chunk) = after.get(..size) else {
            return body.to_string();
        };
        out.push_str(chunk);
        rest = after.get(size + 2..).unwrap_or("");
    }
}

/// A test stream made by ffmpeg: H.264 (GOP = 1 s) + AAC in MPEG-TS, `seconds` long at 25 fps.
pub fn make_ts(dir: &Path, name: &str, seconds: u32, size: &str, bitrate: &str) -> PathBuf {
    make_ts_with(
        dir,
        name,
        seconds,
        size,
        bitrate,
        &["libx264", "-preset", "veryfast"],
    )
}

/// Like [`make_ts`], with HEVC (libx265) video.
pub fn make_hevc_ts(dir: &Path, name: &str, seconds: u32, size: &str, bitrate: &str) -> PathBuf {
    make_ts_with(
        dir,
        name,
        seconds,
        size,
        bitrate,
        &[
            "libx265",
            "-preset",
            "ultrafast",
            "-x265-params",
            "log-level=error",
        ],
    )
}

pub fn make_ts_with(
    dir: &Path,
    name: &str,
    seconds: u32,
    size: &str,
    bitrate: &str,
    video_codec: &[&str],
) -> PathBuf {
    let ffmpeg = require("ffmpeg", "ffmpeg");
    let path = dir.join(name);
    let out = run(
        "ffmpeg (make test stream)",
        Command::new(ffmpeg)
            .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!("testsrc2=size={size}:rate=25"))
            .args([
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=1000:sample_rate=48000",
                "-t",
                &seconds.to_string(),
                "-c:v",
            ])
            .args(video_codec)
            .args([
                "-pix_fmt", "yuv420p", "-g", "25", "-b:v", bitrate, "-c:a", "aac", "-f", "mpegts",
            ])
            .arg(&path),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "ffmpeg could not make {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// ffmpeg pushing `file` in real time to an SRT URL.
pub fn ffmpeg_push(dir: &Path, name: &str, file: &Path, url: &str) -> Proc {
    let ffmpeg = require("ffmpeg", "ffmpeg");
    Proc::spawn(
        name,
        dir,
        Command::new(ffmpeg)
            .args(["-v", "warning", "-re", "-i"])
            .arg(file)
            .args(["-c", "copy", "-f", "mpegts", url]),
    )
}

/// ffmpeg pulling an SRT URL into a TS file. `url` should carry `timeout=` (microseconds) so
/// ffmpeg ends, finalising the file, once the stream stops; SIGINT works only while data flows.
pub fn ffmpeg_record(dir: &Path, name: &str, url: &str, file: &Path) -> Proc {
    let ffmpeg = require("ffmpeg", "ffmpeg");
    Proc::spawn(
        name,
        dir,
        Command::new(ffmpeg)
            .args([
                "-v",
                "warning",
                "-analyzeduration",
                "1000000",
                "-probesize",
                "1000000",
                "-i",
                url,
                "-c",
                "copy",
                "-f",
                "mpegts",
                "-y",
            ])
            .arg(file),
    )
}

/// Video frames ffprobe decodes from `file`.
pub fn decoded_video_frames(file: &Path) -> u64 {
    let ffprobe = require("ffprobe", "ffmpeg");
    let out = run(
        "ffprobe",
        Command::new(ffprobe)
            .args([
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-count_frames",
                "-show_entries",
                "stream=nb_read_frames",
                "-of",
                "csv=p=0",
            ])
            .arg(file),
        Duration::from_secs(60),
    );
    // ffprobe prints the count once per section (program and stream); take the first.
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .trim_end_matches(',')
        .parse()
        .unwrap_or_else(|_| {
            panic!(
                "ffprobe gave no frame count for {}: {stdout:?} {}",
                file.display(),
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// Decoding times per stream of a recording (TS, FLV, …), in 90 kHz ticks: (video, audio).
pub fn decoding_times(file: &Path) -> (Vec<i64>, Vec<i64>) {
    let ffprobe = require("ffprobe", "ffmpeg");
    let out = run(
        "ffprobe (packets)",
        Command::new(ffprobe)
            .args([
                "-v",
                "error",
                "-show_entries",
                "packet=codec_type,dts_time",
                "-of",
                "csv=p=0",
            ])
            .arg(file),
        Duration::from_secs(60),
    );
    let (mut video, mut audio) = (Vec::new(), Vec::new());
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut fields = line.split(',');
        let (Some(kind), Some(dts)) = (fields.next(), fields.next()) else {
            continue;
        };
        // Seconds, whatever the container's time base (FLV counts milliseconds).
        let Ok(seconds) = dts.parse::<f64>() else {
            continue;
        };
        let dts = (seconds * 90_000.0).round() as i64;
        match kind {
            "video" => video.push(dts),
            "audio" => audio.push(dts),
            _ => {}
        }
    }
    (video, audio)
}

/// Everything ffmpeg says (at warning level and above) while decoding `file` completely.
pub fn decode_warnings(file: &Path) -> String {
    let ffmpeg = require("ffmpeg", "ffmpeg");
    let out = run(
        "ffmpeg decode",
        Command::new(ffmpeg)
            .args(["-v", "warning", "-i"])
            .arg(file)
            .args(["-f", "null", "-"]),
        Duration::from_secs(120),
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

pub fn as_u64(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// A TCP connection to 127.0.0.1:`port` from `source` (any 127.0.0.0/8 address is this host),
/// so tests can act as many peers.
pub fn connect_from(source: [u8; 4], port: u16) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((source, 0)).into())?;
    socket.connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)).into(),
        Duration::from_secs(2),
    )?;
    Ok(socket.into())
}

/// True once the server has closed `stream` (end of file or reset). Reads past whatever the
/// server sent first (its handshake answer).
pub fn closed_by_server(stream: &mut TcpStream) -> bool {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(5)));
    let mut buffer = [0u8; 4096];
    for _ in 0..8 {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
    }
    false
}

/// The addresses connected to output `output` of channel `program`, sorted.
pub fn peers(daemon: &Daemon, output: &str) -> Vec<String> {
    let mut peers: Vec<String> = daemon.output("program", output)["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str().map(str::to_string))
        .collect();
    peers.sort();
    peers
}

/// srt-live-transmit sending `file` in real time (ffmpeg paces it into a pipe, the way a relay
/// would be fed) to an SRT URL in srt-live-transmit's syntax (latency in milliseconds).
pub fn slt_push(dir: &Path, name: &str, file: &Path, url: &str) -> Proc {
    let ffmpeg = require("ffmpeg", "ffmpeg");
    let slt = require("srt-live-transmit", "srt-tools");
    let script = format!(
        "{} -v error -re -i '{}' -c copy -f mpegts pipe:1 | {} -q file://con '{}' -chunk:1316",
        ffmpeg.display(),
        file.display(),
        slt.display(),
        url
    );
    Proc::spawn(name, dir, Command::new("sh").arg("-c").arg(script))
}

/// srt-live-transmit receiving an SRT URL (caller or `mode=listener`) into `file`, byte for
/// byte as received. It runs until signalled: SIGINT makes it flush and exit.
pub fn slt_record(dir: &Path, name: &str, url: &str, file: &Path) -> Proc {
    let slt = require("srt-live-transmit", "srt-tools");
    // srt-live-transmit writes files only to stdout; a shell redirects it.
    Proc::spawn(
        name,
        dir,
        Command::new("sh").arg("-c").arg(format!(
            "exec '{}' -q '{url}' file://con -chunk:1316 > '{}'",
            slt.display(),
            file.display()
        )),
    )
}

/// What [`ts_continuity`] found in an MPEG-TS file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Continuity {
    pub packets: u64,
    /// Packets not starting with the sync byte 0x47 (counted from the first aligned packet).
    pub sync_errors: u64,
    /// TR 101 290 1.4: a continuity counter that is not the previous one plus one (for packets
    /// with payload; the same for those without), not excused by the discontinuity indicator
    /// or as the one duplicate allowed.
    pub cc_errors: u64,
}

/// Checks the continuity counters of every PID in the TS bytes of `file` as received (not
/// re-muxed: ffmpeg's recordings renumber them, srt-live-transmit's do not).
pub fn ts_continuity(file: &Path) -> Continuity {
    let bytes = std::fs::read(file).unwrap_or_default();
    let start = (0..bytes.len().min(188))
        .find(|&i| bytes[i] == 0x47 && bytes.get(i + 188).is_none_or(|&b| b == 0x47))
        .unwrap_or(0);
    let mut last: std::collections::HashMap<u16, (u8, bool)> = std::collections::HashMap::new();
    let mut result = Continuity {
        packets: 0,
        sync_errors: 0,
        cc_errors: 0,
    };
    for packet in bytes[start..].chunks_exact(188) {
        result.packets += 1;
        if packet[0] != 0x47 {
            result.sync_errors += 1;
            continue;
        }
        let pid = (u16::from(packet[1] & 0x1f) << 8) | u16::from(packet[2]);
        if pid == 0x1fff {
            continue;
        }
        let control = (packet[3] >> 4) & 3;
        let cc = packet[3] & 0x0f;
        let has_payload = control & 1 == 1;
        let discontinuity = control & 2 == 2 && packet[4] > 0 && packet[5] & 0x80 != 0;
        let entry = last.insert(pid, (cc, false));
        let Some((previous, duplicate_seen)) = entry else {
            continue;
        };
        if discontinuity {
            continue;
        }
        let expected = if has_payload {
            (previous + 1) & 0x0f
        } else {
            previous
        };
        if cc == expected {
            continue;
        }
        if has_payload && cc == previous && !duplicate_seen {
            last.insert(pid, (cc, true));
            continue;
        }
        result.cc_errors += 1;
    }
    result
}

/// A network namespace joined to ours by a veth pair: `10.77.{subnet}.1` on our side, `.2`
/// inside (and any addresses [`Netns::add_address`] adds). Each test using one takes its own
/// `subnet`. Deleted on drop.
pub struct Netns {
    pub name: String,
    host_if: String,
    peer_if: String,
    subnet: u8,
}

impl Netns {
    /// `tag`: two letters naming the test in interface names (15 characters at most).
    pub fn create(tag: &str, subnet: u8) -> Netns {
        let id = std::process::id() % 100_000;
        let netns = Netns {
            name: format!("l{tag}{id}"),
            host_if: format!("l{tag}h{id}"),
            peer_if: format!("l{tag}c{id}"),
            subnet,
        };
        let (ns, host_if, peer_if) = (&netns.name, &netns.host_if, &netns.peer_if);
        let (host, peer) = (
            format!("{}/29", netns.host_address()),
            format!("{}/29", netns.address(2)),
        );
        netns.ip(&["netns", "add", ns]);
        netns.ip(&[
            "link", "add", host_if, "type", "veth", "peer", "name", peer_if,
        ]);
        netns.ip(&["link", "set", peer_if, "netns", ns]);
        netns.ip(&["addr", "add", &host, "dev", host_if]);
        netns.ip(&["link", "set", host_if, "up"]);
        netns.ip(&["-n", ns, "addr", "add", &peer, "dev", peer_if]);
        netns.ip(&["-n", ns, "link", "set", peer_if, "up"]);
        netns.ip(&["-n", ns, "link", "set", "lo", "up"]);
        netns
    }

    /// Our side's address.
    pub fn host_address(&self) -> String {
        self.address(1)
    }

    /// `10.77.{subnet}.{host}`.
    pub fn address(&self, host: u8) -> String {
        format!("10.77.{}.{host}", self.subnet)
    }

    /// Gives the namespace's interface `10.77.{subnet}.{host}` as well.
    pub fn add_address(&self, host: u8) {
        let address = format!("{}/29", self.address(host));
        self.ip(&[
            "-n",
            &self.name,
            "addr",
            "add",
            &address,
            "dev",
            &self.peer_if,
        ]);
    }

    /// Sends the namespace's multicast out of its interface, towards us.
    pub fn route_multicast(&self) {
        self.ip(&[
            "-n",
            &self.name,
            "route",
            "add",
            "224.0.0.0/4",
            "dev",
            &self.peer_if,
        ]);
    }

    /// `program` run inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    fn ip(&self, args: &[&str]) {
        let ip = require("ip", "iproute2");
        let out = run("ip", Command::new(&ip).args(args), Duration::from_secs(10));
        assert!(
            out.status.success(),
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// (pts in seconds, value) of one metadata key per decoded frame of `stream` (`v` or `a`).
pub fn frame_metadata(file: &Path, stream: &str, filter: &str, key: &str) -> Vec<(f64, f64)> {
    let ffmpeg = require("ffmpeg", "ffmpeg");
    let (flag, print) = if stream == "v" {
        ("-vf", "metadata")
    } else {
        ("-af", "ametadata")
    };
    let out = run(
        "ffmpeg metadata",
        Command::new(ffmpeg)
            .args(["-v", "error", "-i"])
            .arg(file)
            .args(["-map", &format!("0:{stream}:0"), flag])
            .arg(format!("{filter},{print}=print:key={key}:file=-"))
            .args(["-f", "null", "-"]),
        Duration::from_secs(60),
    );
    let mut frames = Vec::new();
    let mut pts = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(time) = line.split("pts_time:").nth(1) {
            pts = time.trim().parse().ok();
        } else if let (Some(value), Some(at)) = (line.strip_prefix(&format!("{key}=")), pts) {
            // Silence is "-inf" dB.
            frames.push((at, value.trim().parse().unwrap_or(f64::NEG_INFINITY)));
        }
    }
    frames
}

/// When `frames` cross `threshold` upwards.
pub fn rising_edges(frames: &[(f64, f64)], threshold: f64) -> Vec<f64> {
    frames
        .windows(2)
        .filter(|w| w[0].1 < threshold && w[1].1 >= threshold)
        .map(|w| w[1].0)
        .collect()
}
