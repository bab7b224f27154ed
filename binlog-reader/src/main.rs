//! `rwsplit-binlog-reader`: the lag sidecar. Tails the primary's binlog, polls the replicas and
//! serves `/lag`, `/metrics` and `/healthz` on `sidecar.http_listen`.

use binlog_reader::{config_file, http, LagReader};
use clap::Parser;
use std::process::ExitCode;

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
        let server = http::serve(listener, handle.routes());
        tokio::select! {
            _ = server => ExitCode::FAILURE,
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
