//! `rwsplit-binlog-reader`: the lag sidecar. Tails the primary's binlog, polls the replicas and
//! serves `/lag`, `/metrics` and `/healthz` on `sidecar.http_listen`. It follows the writer
//! (an external failover moves the stream to the new primary, continuing from the GTID
//! reached) and reloads its configuration on SIGHUP.
//!
//! Several readers may serve one database cluster (high availability: the proxies list them all
//! in `lag_source.sidecar.urls`). Each must present its own replication server id: a primary
//! serves one binlog dump per id (MariaDB refuses the second reader, ERROR 4052; MySQL ends
//! the first one's dump). `--server-id` and `--server-id-offset` (or their environment
//! variables) let one shared configuration file serve every reader.

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
    #[command(flatten)]
    server_id: ServerIdArgs,
}

/// Per-instance replication server id, over the shared file's `sidecar.server_id`.
#[derive(clap::Args, Debug, Clone, Copy, Default)]
struct ServerIdArgs {
    /// The replication server id to present to the primary instead of `sidecar.server_id`
    /// (1 to 4294967295). Every reader of one primary needs its own.
    #[arg(long, env = "RWSPLIT_BINLOG_SERVER_ID", value_name = "ID", value_parser = parse_server_id)]
    server_id: Option<u32>,
    /// Added to the server id (`--server-id`, else `sidecar.server_id`): give each replica of a
    /// StatefulSet its ordinal here and one file serves them all with distinct ids.
    #[arg(long, env = "RWSPLIT_BINLOG_SERVER_ID_OFFSET", value_name = "N", value_parser = parse_server_id_offset)]
    server_id_offset: Option<u32>,
}

/// Why the server id the reader would present is unusable.
#[derive(Debug, thiserror::Error, PartialEq)]
enum ServerIdError {
    #[error(
        "{path}: server id {base} ({from}) + {offset} (--server-id-offset / \
         RWSPLIT_BINLOG_SERVER_ID_OFFSET) is over {max}",
        max = u32::MAX
    )]
    Overflow {
        path: String,
        base: u32,
        from: &'static str,
        offset: u32,
    },
    #[error(
        "{path}: `sidecar.server_id` is 0: a replication server id is 1 to {max} \
         (or give --server-id / RWSPLIT_BINLOG_SERVER_ID)",
        max = u32::MAX
    )]
    Zero { path: String },
}

impl ServerIdArgs {
    /// Sets `config.sidecar.server_id` to the id this reader presents; `path` names the file.
    fn apply(self, config: &mut Config, path: &str) -> Result<(), ServerIdError> {
        let (base, from) = match self.server_id {
            Some(id) => (id, "--server-id / RWSPLIT_BINLOG_SERVER_ID"),
            None => (config.sidecar.server_id, "sidecar.server_id"),
        };
        let offset = self.server_id_offset.unwrap_or(0);
        let id = base
            .checked_add(offset)
            .ok_or_else(|| ServerIdError::Overflow {
                path: path.to_string(),
                base,
                from,
                offset,
            })?;
        if id == 0 {
            return Err(ServerIdError::Zero {
                path: path.to_string(),
            });
        }
        config.sidecar.server_id = id;
        Ok(())
    }
}

/// `--server-id`: a replication server id, 1 to 4294967295 (0 is no id to a primary). The
/// message names the variable too: clap names only the flag, even for a value from the
/// environment.
fn parse_server_id(s: &str) -> Result<u32, String> {
    let why = match s.trim().parse::<u64>() {
        Ok(0) => "0 is not a replication server id: give 1 to 4294967295".to_string(),
        Ok(n) => match u32::try_from(n) {
            Ok(id) => return Ok(id),
            Err(_) => format!("{n} is over 4294967295, the largest replication server id"),
        },
        Err(_) => "not a number: a replication server id is 1 to 4294967295".to_string(),
    };
    Err(format!(
        "{why} (from --server-id or RWSPLIT_BINLOG_SERVER_ID)"
    ))
}

/// `--server-id-offset`: 0 to 4294967295 (a StatefulSet ordinal starts at 0).
fn parse_server_id_offset(s: &str) -> Result<u32, String> {
    s.trim().parse::<u32>().map_err(|_| {
        "not a whole number from 0 to 4294967295 (from --server-id-offset or \
         RWSPLIT_BINLOG_SERVER_ID_OFFSET)"
            .to_string()
    })
}

/// Loads `path` and applies the server id overrides: the configuration this reader runs.
fn load(path: &str, ids: ServerIdArgs) -> Result<Config, String> {
    // One line: the parser's first line names the file, line and key; the source excerpt it
    // adds after it is left out.
    let mut config = config_file::load(path)
        .map_err(|e| e.to_string().lines().next().unwrap_or("").to_string())?;
    ids.apply(&mut config, path).map_err(|e| e.to_string())?;
    Ok(config)
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // One line, like the configuration errors: clap's first paragraph (it names the
            // argument), without the usage and tips after it.
            let msg = e.to_string();
            let first: Vec<&str> = msg
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let line = first.join(" ");
            eprintln!(
                "rwsplit-binlog-reader: {}",
                line.strip_prefix("error: ").unwrap_or(&line)
            );
            return ExitCode::from(2);
        }
    };
    let config = match load(&args.config, args.server_id) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rwsplit-binlog-reader: {e}");
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
        let server_id = config.sidecar.server_id;
        tracing::info!(%listen, server_id, "serving /lag, /metrics, /healthz");
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
            _ = follow_writer(config, args.config.clone(), args.server_id, current) => ExitCode::FAILURE,
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
        Ok(next) => {
            // Not left to the last clone's drop: a request in flight holding one would keep
            // the old stream alive, and it would win the binlog dump back from the new one.
            previous.stop();
            *lock(current) = next;
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot restart the binlog reader; keeping the old one")
        }
    }
}

/// Follows the writer (checked every second) and reloads the configuration on SIGHUP.
/// The server id overrides apply to every reloaded file too. Returns only if signals cannot
/// be had.
async fn follow_writer(
    mut config: Config,
    path: String,
    ids: ServerIdArgs,
    current: Arc<Mutex<LagHandle>>,
) {
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
            match load(&path, ids) {
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
                    tracing::error!(
                        error = %e,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(server_id: u32) -> Config {
        let yaml = format!(
            "servers:\n  - {{name: p, host: 127.0.0.1, port: 3306, role: primary}}\n\
             monitor: {{user: m, password: x}}\nsidecar: {{server_id: {server_id}}}\n"
        );
        Config::from_yaml("r.yaml", &yaml).expect("valid config")
    }

    fn applied(
        base: u32,
        server_id: Option<u32>,
        offset: Option<u32>,
    ) -> Result<u32, ServerIdError> {
        let mut c = config(base);
        ServerIdArgs {
            server_id,
            server_id_offset: offset,
        }
        .apply(&mut c, "r.yaml")?;
        Ok(c.sidecar.server_id)
    }

    #[test]
    fn the_override_replaces_the_file_and_the_offset_adds_to_either() {
        assert_eq!(applied(4242, None, None), Ok(4242));
        assert_eq!(applied(4242, Some(7), None), Ok(7));
        assert_eq!(applied(4242, None, Some(1)), Ok(4243));
        assert_eq!(applied(4242, Some(7), Some(1)), Ok(8));
        assert_eq!(applied(0, None, Some(1)), Ok(1));
    }

    #[test]
    fn an_unusable_id_names_where_it_came_from() {
        let err = applied(u32::MAX, None, Some(1)).unwrap_err().to_string();
        assert!(
            err.starts_with("r.yaml: server id 4294967295 (sidecar.server_id) + 1"),
            "{err}"
        );
        let err = applied(1, Some(u32::MAX), Some(2)).unwrap_err().to_string();
        assert!(
            err.contains("(--server-id / RWSPLIT_BINLOG_SERVER_ID) + 2"),
            "{err}"
        );
        let err = applied(0, None, None).unwrap_err().to_string();
        assert!(err.contains("`sidecar.server_id` is 0"), "{err}");
    }

    #[test]
    fn server_ids_are_1_to_u32_max() {
        assert_eq!(parse_server_id("1"), Ok(1));
        assert_eq!(parse_server_id(" 4294967295 "), Ok(u32::MAX));
        assert!(parse_server_id("0").unwrap_err().contains("0 is not"));
        assert!(parse_server_id("4294967296")
            .unwrap_err()
            .contains("over 4294967295"));
        assert!(parse_server_id("-1").unwrap_err().contains("not a number"));
        assert!(parse_server_id("").unwrap_err().contains("not a number"));
        assert_eq!(parse_server_id_offset("0"), Ok(0));
        assert!(parse_server_id_offset("x").is_err());
    }
}
