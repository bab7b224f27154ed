//! `rwsplit-binlog-reader`: the lag sidecar. Tails the primary's binlog, polls the replicas and
//! serves `/lag`, `/metrics` and `/healthz` on `sidecar.http_listen`. It follows the writer
//! (an external failover moves the stream to the new primary, continuing from the GTID
//! reached) and reloads its configuration on SIGHUP.

use binlog_reader::follow::{self, Finder};
use binlog_reader::stream::Target;
use binlog_reader::{config_file, http, LagHandle, LagReader};
use clap::Parser;
use router::config::Config;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Measures every replica's lag from the primary's binlog, to the millisecond.
#[derive(Parser, Debug)]
#[command(name = "rwsplit-binlog-reader", version, about)]
struct Args {
    /// The rwsplit YAML configuration (servers, monitor credentials, sidecar section).
    #[arg(long, value_name = "FILE")]
    config: String,
    /// Validate the configuration, print "config OK" and exit (exit status 2 on error).
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match config_file::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            // One line: the parser's first line names the file, line and key; the source
            // excerpt it adds after it is left out.
            let msg = e.to_string();
            eprintln!(
                "rwsplit-binlog-reader: {}",
                msg.lines().next().unwrap_or("")
            );
            return ExitCode::from(2);
        }
    };
    if args.check_config {
        println!("config OK");
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rwsplit-binlog-reader: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let listen = config.sidecar.http_listen.clone();
        let listener = match tokio::net::TcpListener::bind(&listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!(
                    "rwsplit-binlog-reader: cannot listen on {listen} (sidecar.http_listen): {e}"
                );
                return ExitCode::FAILURE;
            }
        };
        let handle = match LagReader::spawn(&config) {
            Ok(h) => h,
            Err(e) => {
                eprintln!("rwsplit-binlog-reader: {e}");
                return ExitCode::from(2);
            }
        };
        tracing::info!(%listen, "serving /lag, /metrics, /healthz");
        let current = Arc::new(Mutex::new(handle));
        let routes: http::Routes = {
            let current = current.clone();
            Arc::new(move |req: http::Request| {
                let h = lock(&current).clone();
                (h.routes())(req)
            })
        };
        let server = http::serve(listener, routes);
        tokio::select! {
            _ = server => ExitCode::FAILURE,
            _ = follow_writer(config, args.config.clone(), current) => ExitCode::FAILURE,
            _ = shutdown_signal() => {
                tracing::info!("shutting down");
                ExitCode::SUCCESS
            }
        }
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
            return;
        }
    }
    let _ = ctrl_c.await;
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Monitor connections to every configured server, to find the writer.
fn finder(config: &Config) -> Finder {
    let password = binlog_reader::secret::resolve(&config.monitor.secret).unwrap_or_default();
    Finder::new(
        config
            .servers
            .iter()
            .map(|s| Target {
                host: s.host.clone(),
                port: s.port,
                user: config.monitor.user.clone(),
                password: password.clone(),
                tls: s.tls.clone(),
            })
            .collect(),
    )
}

/// Replaces the running reader by one for `config`, continuing from where it stopped.
fn restart(config: &Config, current: &Mutex<LagHandle>) {
    let previous = lock(current).clone();
    match LagReader::spawn_following(config, Some(&previous)) {
        Ok(next) => *lock(current) = next,
        Err(e) => {
            tracing::error!(error = %e, "cannot restart the binlog reader; keeping the old one")
        }
    }
}

/// Follows the writer (checked every second) and reloads the configuration on SIGHUP.
/// Returns only if signals cannot be had.
async fn follow_writer(mut config: Config, path: String, current: Arc<Mutex<LagHandle>>) {
    #[cfg(unix)]
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP");
            return;
        }
    };
    let mut finder = finder(&config);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let reload = tokio::select! {
            _ = tick.tick() => false,
            _ = hup.recv() => true,
        };
        #[cfg(not(unix))]
        let reload = {
            tick.tick().await;
            false
        };
        let streaming = lock(&current).primary_name().to_string();
        if reload {
            match config_file::load(&path) {
                Ok(next) => {
                    // Keep following the writer found, if the new list still has it.
                    let followed = next
                        .servers
                        .iter()
                        .position(|s| s.name == streaming)
                        .map(|i| follow::with_primary(&next, i))
                        .unwrap_or_else(|| next.clone());
                    tracing::info!(path = %path, "configuration reloaded (SIGHUP)");
                    restart(&followed, &current);
                    finder = self::finder(&next);
                    config = next;
                }
                Err(e) => {
                    let msg = e.to_string();
                    tracing::error!(
                        error = msg.lines().next().unwrap_or(""),
                        "configuration not reloaded; keeping the running one"
                    );
                }
            }
            continue;
        }
        let seen = finder.round(Duration::from_secs(1)).await;
        if let Some(w) = follow::writer(&seen) {
            let Some(name) = config.servers.get(w).map(|s| s.name.clone()) else {
                continue;
            };
            if name != streaming {
                tracing::warn!(from = %streaming, to = %name, "the writer changed: the binlog stream follows it");
                restart(&follow::with_primary(&config, w), &current);
            }
        }
    }
}
