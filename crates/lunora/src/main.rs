//! `lunora`: the daemon and its command-line tools.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod channel;
mod config;
mod state;
mod status;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use lunora_api::IngestView;
use lunora_egress::{
    Bus, DEFAULT_RETRY, DestinationSpec, HlsPreview, HlsSettings, OutputStatsHandle, SrtOutput,
    SrtOutputMode, SrtOutputSettings, ValidDestination,
};
use lunora_ingest::{BoundSrtInput, RtmpInput, RtmpServer, SrtInputSettings, StatsHandle};
use lunora_srt::AccessPolicy;
use lunora_ts::AnalyserSettings;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::channel::{ChannelRuntime, ChannelTask};
use crate::config::{Config, InputTransport, OutputTarget};
use crate::state::{ChannelChanges, StateStore};
use crate::status::{ChannelHandles, InputHandle, OutputHandle, Status};
use lunora_switch::{InputSpec, Role, Switcher};

#[derive(Debug, Parser)]
#[command(
    name = "lunora",
    version,
    about = "Lunora Edge: live-video gateway with seamless main/backup failover"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon.
    Run {
        /// Configuration file; without it the embedded default configuration is used.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration file and exit: 0 when valid, 1 with every error otherwise.
    CheckConfig { file: PathBuf },
}

/// Kernel UDP buffer requested per SRT port (see DEPENDENCIES.md: 64 KiB drops at 50 Mbit/s).
const UDP_BUFFER_BYTES: usize = 4 << 20;
/// Items the channel bus keeps for readers that are behind.
const BUS_CAPACITY: usize = 256;
/// Events an input may queue towards its channel before frames are dropped.
const INPUT_QUEUE: usize = 2048;

fn load(path: Option<&PathBuf>) -> Result<Config> {
    let env = |name: &str| std::env::var(name).ok();
    match path {
        Some(path) => {
            let source = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Ok(config::parse(&path.display().to_string(), &source, &env)?)
        }
        None => Ok(config::parse(
            "<embedded default>",
            config::DEFAULT_CONFIG,
            &env,
        )?),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => match load(Some(&file)) {
            Ok(config) => {
                println!(
                    "{}: ok ({} channel(s))",
                    file.display(),
                    config.channels.len()
                );
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e:#}");
                std::process::ExitCode::FAILURE
            }
        },
        Command::Run { config } => {
            init_logging();
            let result = load(config.as_ref()).and_then(|config| {
                tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()
                    .context("cannot start the async runtime")?
                    .block_on(run(config))
            });
            match result {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    error!("{e:#}");
                    eprintln!("lunora: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    // srt-tokio logs through `log`; the subscriber bridges it. It warns once per malformed
    // datagram, so a hostile sender could flood the log: only its errors pass unless RUST_LOG
    // asks for more. Lunora logs every rejection itself.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,srt_tokio=error,srt_protocol=error"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}

async fn run(config: Config) -> Result<()> {
    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    let http = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .with_context(|| {
            format!(
                "cannot bind the HTTP listener on {} ([http] listen)",
                config.http_listen
            )
        })?;

    let state_dir = config.state_dir.clone().unwrap_or_else(state::default_dir);
    let store = StateStore::open(&state_dir).with_context(|| {
        format!(
            "cannot open the state directory {} ([state] dir)",
            state_dir.display()
        )
    })?;
    info!(file = %store.path().display(), "destination changes made through the API are saved here");
    let hls_settings = HlsSettings {
        first_sequence: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        ..HlsSettings::default()
    };
    let mut channels = Vec::new();
    let rtmp_inputs = lunora_ingest::RtmpInputs::new();
    for channel in &config.channels {
        let bus = Bus::new(BUS_CAPACITY);
        let (sender, receiver) = mpsc::channel(INPUT_QUEUE);
        // The switcher numbers inputs by priority: the main first, then backups as listed.
        let mut order: Vec<usize> = (0..channel.inputs.len()).collect();
        order.sort_by_key(|&i| channel.inputs[i].role != config::Role::Main);
        let mut inputs = Vec::new();
        for &index in &order {
            let input = &channel.inputs[index];
            let stats = StatsHandle::new();
            let listen = match &input.transport {
                InputTransport::Srt {
                    listen,
                    latency,
                    passphrase,
                    stream_id,
                } => {
                    let settings = SrtInputSettings {
                        id: input.id.clone(),
                        listen: *listen,
                        latency: *latency,
                        access: AccessPolicy {
                            passphrase: passphrase.clone(),
                            stream_id: stream_id.clone(),
                        },
                        input_loss: channel.input_loss,
                        analyser: AnalyserSettings::default(),
                        udp_buffer_bytes: UDP_BUFFER_BYTES,
                    };
                    let bound = BoundSrtInput::bind(settings, stats.clone())
                        .await
                        .with_context(|| {
                            format!(
                                "channel {:?} input {:?}: cannot bind SRT port {listen}",
                                channel.id, input.id
                            )
                        })?;
                    let listen = bound.local_addr();
                    tasks.spawn(bound.run(
                        inputs.len(),
                        sender.clone(),
                        cancel.clone().cancelled_owned(),
                    ));
                    listen
                }
                InputTransport::Rtmp { stream_key } => {
                    rtmp_inputs.add(RtmpInput {
                        name: format!("{}/{}", channel.id, input.id),
                        stream_key: stream_key.clone(),
                        index: inputs.len(),
                        events: sender.clone(),
                        stats: stats.clone(),
                    });
                    config.rtmp_listen
                }
            };
            let (kind, ingest) = match &input.transport {
                InputTransport::Srt {
                    latency,
                    passphrase,
                    stream_id,
                    ..
                } => (
                    "srt",
                    IngestView {
                        latency_ms: Some(latency.as_millis() as u64),
                        passphrase_set: passphrase.is_some(),
                        stream_id: stream_id.clone(),
                        ..IngestView::default()
                    },
                ),
                InputTransport::Rtmp { .. } => (
                    "rtmp",
                    IngestView {
                        rtmp_app: Some("live"),
                        stream_key_set: true,
                        ..IngestView::default()
                    },
                ),
            };
            inputs.push(InputHandle {
                id: input.id.clone(),
                role: input.role.name(),
                kind,
                listen,
                ingest,
                stats,
            });
        }
        drop(sender);
        let mut outputs = Vec::new();
        let mut rtmp_destinations = Vec::new();
        for output in &channel.outputs {
            let stats = OutputStatsHandle::new();
            let (mode, address, mode_name) = match &output.target {
                OutputTarget::Rtmp { spec, destination } => {
                    rtmp_destinations.push((output.id.clone(), spec.clone(), destination.clone()));
                    continue;
                }
                OutputTarget::Caller {
                    address,
                    passphrase,
                    key_length,
                    stream_id,
                } => (
                    SrtOutputMode::Caller {
                        address: *address,
                        stream_id: stream_id.clone(),
                        passphrase: passphrase.clone(),
                        key_length: *key_length,
                    },
                    address.to_string(),
                    "caller",
                ),
                OutputTarget::Listener {
                    listen,
                    passphrase,
                    stream_id,
                } => (
                    SrtOutputMode::Listener {
                        listen: *listen,
                        access: AccessPolicy {
                            passphrase: passphrase.clone(),
                            stream_id: stream_id.clone(),
                        },
                    },
                    listen.to_string(),
                    "listener",
                ),
            };
            let settings = SrtOutputSettings {
                id: output.id.clone(),
                mode,
                latency: output.latency,
                udp_buffer_bytes: UDP_BUFFER_BYTES,
                retry_min: DEFAULT_RETRY.0,
                retry_max: DEFAULT_RETRY.1,
            };
            let started =
                SrtOutput::start(settings, bus.clone(), stats.clone(), cancel.child_token())
                    .await
                    .with_context(|| {
                        format!(
                            "channel {:?} output {:?}: cannot start on {address}",
                            channel.id, output.id
                        )
                    })?;
            let address = started.local_addr().map_or(address, |a| a.to_string());
            outputs.push(OutputHandle {
                id: output.id.clone(),
                kind: "srt",
                mode: mode_name,
                address,
                stats,
                destination: None,
            });
        }
        apply_saved_changes(
            &channel.id,
            &mut rtmp_destinations,
            store.changes(&channel.id),
            &outputs,
        );
        let specs = order
            .iter()
            .map(|&i| InputSpec {
                id: channel.inputs[i].id.clone(),
                role: if channel.inputs[i].role == config::Role::Main {
                    Role::Main
                } else {
                    Role::Backup
                },
            })
            .collect();
        let runtime = Arc::new(Mutex::new(ChannelRuntime::default()));
        let (commands, command_receiver) = mpsc::channel(16);
        let task = ChannelTask {
            id: channel.id.clone(),
            switcher: Switcher::new(channel.policy.clone(), specs),
            bus: bus.clone(),
            runtime: runtime.clone(),
        };
        tasks.spawn(task.run(receiver, command_receiver, cancel.clone()));
        let handles = ChannelHandles {
            id: channel.id.clone(),
            mode: channel.mode.name(),
            inputs,
            outputs: Mutex::new(Vec::new()),
            runtime,
            commands,
            hls: HlsPreview::spawn(bus.clone(), hls_settings, cancel.child_token()),
            bus,
            cancel: cancel.child_token(),
        };
        for (id, spec, destination) in rtmp_destinations {
            // What an operator last did wins over autostart (crash recovery).
            let start = store.running(&channel.id, &id).unwrap_or(spec.autostart);
            outputs.push(handles.spawn_destination(
                id,
                spec,
                destination,
                start,
                OutputStatsHandle::new(),
            ));
        }
        *handles.outputs.lock().unwrap_or_else(|p| p.into_inner()) = outputs;
        channels.push(handles);
    }

    if !rtmp_inputs.is_empty() {
        let server = RtmpServer::bind(config.rtmp_listen)
            .await
            .with_context(|| {
                format!(
                    "cannot bind the RTMP server on {} ([rtmp] listen)",
                    config.rtmp_listen
                )
            })?;
        let server = match &config.rtmps {
            Some(rtmps) => server
                .with_rtmps(rtmps)
                .await
                .context("cannot start RTMPS ingest ([rtmp] tls_listen)")?,
            None => server,
        };
        let address = server.local_addr().context("RTMP server has no address")?;
        info!(listen = %address, "RTMP ingest listening (rtmp://HOST:{}/live/<stream key>)", address.port());
        if let Some(tls) = server.rtmps_addr() {
            info!(listen = %tls, "RTMPS ingest listening (rtmps://HOST:{}/live/<stream key>)", tls.port());
        }
        tasks.spawn(server.run(rtmp_inputs, cancel.clone().cancelled_owned()));
    }

    let status = Arc::new(Status::new(channels, store));
    let http_address = http.local_addr().context("HTTP listener has no address")?;
    let http_cancel = cancel.clone();
    tasks.spawn({
        let status = status.clone();
        async move {
            if let Err(e) = lunora_api::serve(http, status, http_cancel.cancelled_owned()).await {
                error!(error = %e, "HTTP server stopped");
            }
        }
    });
    tasks.close();
    status.set_ready();
    info!(http = %http_address, channels = config.channels.len(), "lunora is running");
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        warn!(error = %e, "could not notify systemd");
    }

    shutdown_signal().await;
    info!("shutting down");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    cancel.cancel();
    if tokio::time::timeout(Duration::from_secs(5), tasks.wait())
        .await
        .is_err()
    {
        warn!("some tasks did not stop within 5 s");
    }
    Ok(())
}

/// Lays the destinations added, changed or removed through the API over the config file's. A
/// saved destination that no longer validates (or clashes with an SRT output's id) is skipped
/// with a log line; the rest run.
fn apply_saved_changes(
    channel: &str,
    destinations: &mut Vec<(String, DestinationSpec, ValidDestination)>,
    changes: ChannelChanges,
    srt_outputs: &[OutputHandle],
) {
    for (id, change) in changes {
        let existing = destinations.iter().position(|(d, _, _)| *d == id);
        match (change, existing) {
            (None, Some(index)) => {
                destinations.remove(index);
            }
            (None, None) => {}
            (Some(spec), existing) => {
                if srt_outputs.iter().any(|o| o.id == id) {
                    warn!(channel, output = %id, "a saved destination has the id of an SRT output in the config file; skipping it");
                    continue;
                }
                match spec.validate() {
                    Ok(destination) => match existing {
                        Some(index) => destinations[index] = (id, spec, destination),
                        None => destinations.push((id, spec, destination)),
                    },
                    Err(problems) => {
                        let reasons: Vec<String> =
                            problems.into_iter().map(|p| p.message).collect();
                        warn!(channel, output = %id, "skipping a saved destination: {}", reasons.join("; "));
                    }
                }
            }
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C will stop lunora");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
