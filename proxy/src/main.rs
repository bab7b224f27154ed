//! `rwsplit-proxy`: parses the command line, loads and checks the configuration, binds the
//! listeners, and runs the proxy until SIGTERM/SIGINT. Every startup failure is one line that
//! names the file, the key, and what to do.

use clap::Parser;
use proxy::context::{load_config, Context};
use proxy::server;
use std::path::PathBuf;
use std::process::ExitCode;

/// A MySQL/MariaDB read/write-splitting proxy.
#[derive(Debug, Parser)]
#[command(name = "rwsplit-proxy", version, about)]
struct Args {
    /// The YAML configuration file (see examples/local-cluster.yaml).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
    /// Validate the configuration, print a summary, and exit (0 when valid, 2 when not).
    #[arg(long)]
    check_config: bool,
}

/// Exit code for a configuration the proxy cannot use.
const EXIT_CONFIG: u8 = 2;
/// Exit code for a listener that cannot be opened.
const EXIT_LISTEN: u8 = 1;

fn main() -> ExitCode {
    let args = Args::parse();
    init_tracing();
    let config = match load_config(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rwsplit-proxy: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // The client TLS certificate and key must load now, as on a reload (a bad pair would
    // otherwise fail every TLS client).
    if let Err(e) = proxy::frontend::load_tls(&config) {
        let e = match e {
            proxy::frontend::Error::Tls(m) => m,
            other => other.to_string(),
        };
        eprintln!("rwsplit-proxy: {}: {e}", args.config.display());
        return ExitCode::from(EXIT_CONFIG);
    }
    // So must the backends' TLS CA files.
    if let Err(e) = proxy::backend::tls::prepare(&config) {
        let e = match e {
            proxy::backend::Error::Tls(m) => m,
            other => other.to_string(),
        };
        eprintln!("rwsplit-proxy: {}: {e}", args.config.display());
        return ExitCode::from(EXIT_CONFIG);
    }
    if args.check_config {
        let users = config.proxy.as_ref().map(|p| p.users.len()).unwrap_or(0);
        println!(
            "config OK: {} servers, {} users",
            config.servers.len(),
            users
        );
        return ExitCode::SUCCESS;
    }
    let threads = config.proxy.as_ref().map_or(0, |p| p.worker_threads);
    let runtime = match runtime_for(threads) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rwsplit-proxy: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let file = args.config.display().to_string();
        let (listen, http_listen) = match &config.proxy {
            Some(p) => (p.listen.clone(), p.http_listen.clone()),
            None => return ExitCode::from(EXIT_CONFIG),
        };
        let listener = match server::bind(&listen, "proxy.listen", &file).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("rwsplit-proxy: {e}");
                return ExitCode::from(EXIT_LISTEN);
            }
        };
        let admin = match server::bind(&http_listen, "proxy.http_listen", &file).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("rwsplit-proxy: {e}");
                return ExitCode::from(EXIT_LISTEN);
            }
        };
        let ctx = Context::new(args.config.clone(), config);
        tracing::info!(%listen, %http_listen, version = env!("CARGO_PKG_VERSION"), "rwsplit-proxy started");
        server::serve_all(ctx, listener, admin).await;
        tracing::info!("rwsplit-proxy stopped");
        ExitCode::SUCCESS
    })
}

/// The runtime `proxy.worker_threads` asks for. One thread gets tokio's single-threaded
/// scheduler: every wake-up stays on that thread, which is what makes it cheaper per query
/// than a one-worker pool (no handoff between the accept thread and the worker).
fn runtime_for(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let threads = match threads {
        0 => automatic_threads(),
        n => n,
    };
    if threads == 1 {
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
    }
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if threads > 1 {
        b.worker_threads(threads);
    }
    b.enable_all().build()
}

/// `proxy.worker_threads: 0`: one thread per CPU the process may use (`available_parallelism`
/// counts a container's CPU quota), except on two CPUs or fewer, where one thread does it.
/// Most of a relayed statement's cost is the kernel's (sends, receives, wake-ups): with two
/// workers, a worker that finds more than one session ready wakes the other (tokio's work
/// stealing, a futex wake and a context switch), on CPUs that also run the clients or the
/// servers. Counted per point select: 0.6 futex calls and 0.9 `epoll_wait` with two workers,
/// none and 0.5 with one (docs/BENCHMARKS.md, "Per-query cost").
fn automatic_threads() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus <= 2 {
        1
    } else {
        cpus
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
