//! `lunora`: the daemon and its command-line tools. This file is the edge: command line,
//! config loading, start-up, signals and systemd; the running graph is `lunora-control`'s.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod accounts;
mod config;
mod state;

/// glibc's malloc raises its mmap threshold after large frees (a 19 MiB password hash at first
/// start, a puller's buffers), after which frame-sized blocks fragment its heap: RSS crept up
/// a sixth over a 10-minute soak. jemalloc keeps it flat, for about a tenth more relay CPU
/// (README, Benchmarks).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use lunora_control::{
    Actor, Control, Environment, Graph, HlsSettings, Store, StoreHealth, UserRole,
};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::accounts::{TokenCommand, UserCommand};
use crate::config::Config;

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
    /// Manage users (works while the daemon runs).
    User {
        /// The daemon's configuration file (for its state directory).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage API tokens (works while the daemon runs).
    Token {
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: TokenCommand,
    },
}

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

/// The state directory exactly as the daemon finds it.
fn state_dir(config: &Config) -> PathBuf {
    config.state_dir.clone().unwrap_or_else(state::default_dir)
}

fn open_store(dir: &Path) -> Result<lunora_control::StoreOpened> {
    Store::open(dir).with_context(|| {
        format!(
            "cannot open the state database in {} ([state] dir)",
            dir.display()
        )
    })
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::CheckConfig { file } => load(Some(&file)).map(|config| {
            println!(
                "{}: ok ({} channel(s))",
                file.display(),
                config.graph.channels.len()
            );
        }),
        Command::User { config, command } => load(config.as_ref()).and_then(|config| {
            let opened = open_store(&state_dir(&config))?;
            accounts::user_command(
                &opened.store,
                command,
                &mut std::io::stdin().lock(),
                &mut std::io::stdout().lock(),
            )
        }),
        Command::Token { config, command } => load(config.as_ref()).and_then(|config| {
            let opened = open_store(&state_dir(&config))?;
            accounts::token_command(&opened.store, command, &mut std::io::stdout().lock())
        }),
        Command::Run { config } => load(config.as_ref()).and_then(|loaded| {
            init_logging(loaded.log_format);
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?
                .block_on(run(loaded, config))
                .inspect_err(|e| error!("{e:#}"))
        }),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lunora: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(format: config::LogFormat) {
    use tracing_subscriber::EnvFilter;
    // srt-protocol logs through `log`; the subscriber bridges it. It warns per odd packet, so
    // a hostile sender could flood the log: only its errors pass unless RUST_LOG asks for
    // more. Lunora logs every rejection itself, rate-limited.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,srt_protocol=error,quinn_udp=error"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr);
    match format {
        config::LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        config::LogFormat::Json => builder.json().with_current_span(true).init(),
    }
}

/// File inputs' `s3://` URLs, fetched into `<state dir>/media` with `[aws]`'s account (or the
/// standard chain's). The client is made at the first fetch: finding a region without `[aws]`
/// may ask the instance metadata service, which a box without S3 files need not wait for.
#[cfg(feature = "medialive")]
fn s3_files(config: &Config, state: &std::path::Path) -> Option<lunora_control::FetchFile> {
    let settings = config.aws.clone();
    let cache = state.join("media");
    let files = Arc::new(tokio::sync::OnceCell::new());
    Some(lunora_control::FetchFile(Arc::new(move |url: String| {
        let (files, settings, cache) = (files.clone(), settings.clone(), cache.clone());
        Box::pin(async move {
            let files = files
                .get_or_init(|| lunora_medialive::S3Files::load(settings.as_ref(), cache))
                .await;
            files.fetch(&url).await.map_err(|e| e.to_string())
        })
    })))
}

#[cfg(not(feature = "medialive"))]
fn s3_files(_: &Config, _: &std::path::Path) -> Option<lunora_control::FetchFile> {
    None
}

async fn run(config: Config, config_path: Option<PathBuf>) -> Result<()> {
    let cancel = CancellationToken::new();
    let http = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .with_context(|| {
            format!(
                "cannot bind the HTTP listener on {} ([http] listen)",
                config.http_listen
            )
        })?;

    let dir = state_dir(&config);
    let opened = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || open_store(&dir)).await??
    };
    let mut health = StoreHealth::default();
    if let Some(recovered) = &opened.recovered {
        error!(moved_to = %recovered.moved_to.display(), reason = %recovered.reason, "the state database could not be read and was set aside; the config file's channels run, and no destination starts until an operator starts it");
        health.problem = Some(format!(
            "the saved state could not be read ({}); it was kept as {}",
            recovered.reason,
            recovered.moved_to.display()
        ));
    }
    if let Some(problem) = &opened.import_problem {
        error!(problem = %problem, "the saved destinations of an earlier version could not be imported; no destination starts until an operator starts it");
        health.problem = Some(problem.clone());
    }
    let store = Arc::new(opened.store);
    {
        let (store, dir) = (store.clone(), dir.clone());
        tokio::task::spawn_blocking(move || state::first_admin(&store, &dir)).await??;
    }
    info!(file = %store.path().display(), "users, sessions and changes made through the API are kept here");

    let graph = Graph::new(
        Environment {
            rtmp_listen: config.rtmp_listen,
            rtmps: config.rtmps.clone(),
            slate: config.slate.clone(),
            fetch: s3_files(&config, &dir),
            whip: config.whip.clone(),
            hls: HlsSettings {
                first_sequence: SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
                ..HlsSettings::default()
            },
        },
        cancel.clone(),
    );
    let choices = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.running()).await?
    };
    match choices {
        Ok(choices) => graph.set_run_choices(choices),
        Err(e) => {
            warn!(error = %e, "cannot read which destinations operators started; none starts on its own");
            graph.hold_destinations();
        }
    }
    let control = Control::start(graph.clone(), store, config.graph.clone(), health)
        .await
        .context("cannot start the channels")?;

    #[cfg(feature = "medialive")]
    let medialive = match &config.aws {
        Some(aws) => {
            let clients = lunora_medialive::Clients::load(aws).await;
            info!(
                region = %aws.region,
                box_id = %aws.box_id,
                endpoint = aws.endpoint_url.as_deref().unwrap_or("AWS"),
                "MediaLive provisioning through the API",
            );
            Some(lunora_api::Cloud::new(
                lunora_medialive::Provisioner::new(
                    clients,
                    lunora_medialive::Options {
                        input_security_groups: aws.input_security_groups,
                        origin_endpoints: aws.origin_endpoints,
                        ..Default::default()
                    },
                ),
                aws.box_id.clone(),
                std::time::Duration::from_secs(aws.poll_interval_s),
                aws.public_address_url.clone(),
            ))
        }
        None => None,
    };
    let app = lunora_api::App::new(
        control.clone(),
        lunora_api::ApiSettings {
            hosts: config.http_hosts.clone(),
            metrics_token: config.metrics_token.clone(),
            secure_cookies: false,
            #[cfg(feature = "medialive")]
            medialive,
        },
    );
    let http_address = http.local_addr().context("HTTP listener has no address")?;
    if let Some(https) = &config.https {
        let acceptor = lunora_control::tls_acceptor(&https.certificate, &https.private_key)
            .context("cannot start HTTPS ([http] tls_listen)")?;
        let listener = tokio::net::TcpListener::bind(https.listen)
            .await
            .with_context(|| {
                format!("cannot bind HTTPS on {} ([http] tls_listen)", https.listen)
            })?;
        let listener = lunora_api::TlsListener::new(listener, acceptor)
            .context("the HTTPS listener has no address")?;
        info!(https = %https.listen, "dashboard and API over HTTPS");
        let (app, cancel) = (app.over_tls(), cancel.clone());
        graph.tasks().spawn(async move {
            lunora_api::serve(listener, app, cancel.cancelled_owned()).await;
        });
    }
    #[cfg(feature = "medialive")]
    {
        let (app, cancel) = (app.clone(), cancel.clone());
        graph.tasks().spawn(async move {
            lunora_api::Cloud::watch(app, cancel.cancelled_owned()).await;
        });
    }
    let http_cancel = cancel.clone();
    graph.tasks().spawn(async move {
        lunora_api::serve(http, app, http_cancel.cancelled_owned()).await;
    });
    info!(http = %http_address, channels = config.graph.channels.len(), "lunora is running");
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        warn!(error = %e, "could not notify systemd");
    }

    signals(&control, config_path.as_ref()).await;
    info!("shutting down");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    if !graph.shutdown().await {
        warn!("some tasks did not stop within 5 s");
    }
    Ok(())
}

/// Waits for SIGTERM or Ctrl-C; on SIGHUP re-reads the config file and applies the difference.
async fn signals(control: &Arc<Control>, config_path: Option<&PathBuf>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut terminate), Ok(mut hangup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        warn!("cannot listen for SIGTERM/SIGHUP; only Ctrl-C will stop lunora");
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = terminate.recv() => return,
            _ = tokio::signal::ctrl_c() => return,
            _ = hangup.recv() => reload(control, config_path).await,
        }
    }
}

async fn reload(control: &Control, config_path: Option<&PathBuf>) {
    let Some(path) = config_path else {
        info!("SIGHUP: running the embedded default configuration; nothing to re-read");
        return;
    };
    info!(file = %path.display(), "SIGHUP: re-reading the configuration");
    match load(Some(path)) {
        Ok(config) => {
            // Whoever can signal the daemon runs it: the audit log names the signal.
            let actor = Actor {
                username: "sighup".into(),
                role: UserRole::Superadmin,
                address: None,
            };
            match control
                .execute(&actor, lunora_control::Command::ReloadConfig(config.graph))
                .await
            {
                Ok(_) => info!(file = %path.display(), "configuration re-read and applied"),
                Err(e) => {
                    error!(file = %path.display(), "the re-read configuration was not applied: {e}")
                }
            }
        }
        Err(e) => error!("the configuration file has errors, nothing changed: {e:#}"),
    }
}
