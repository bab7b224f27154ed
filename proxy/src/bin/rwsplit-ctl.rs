//! `rwsplit-ctl`: the operator's command line over a running proxy's admin API
//! (`proxy.http_listen`, docs/ADMIN.md). Human tables by default, the API's JSON with `--json`.
//! Exit status: 0 done, 1 the proxy refused or could not be reached (the reason on stderr),
//! 2 bad usage.

use clap::{Parser, Subcommand};
use proxy::ctl::{self, Client};
use std::path::PathBuf;
use std::process::ExitCode;

/// Drain replicas, change weights, list and kill sessions, see the costliest statements.
#[derive(Debug, Parser)]
#[command(name = "rwsplit-ctl", version, about)]
struct Args {
    /// The proxy's admin address (`proxy.http_listen`).
    #[arg(
        long,
        env = "RWSPLIT_ADMIN_URL",
        default_value = "http://127.0.0.1:9033",
        global = true
    )]
    url: String,
    /// Bearer token (`proxy.admin.token`); prefer the environment variable or a file, which
    /// other users cannot read in the process list.
    #[arg(
        long,
        env = "RWSPLIT_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    token: Option<String>,
    /// A file holding the token (as `proxy.admin.token_file`).
    #[arg(long, value_name = "FILE", global = true, conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every server: role, state, lag, weight, load, runtime overrides.
    Servers,
    /// Maintenance on: no new reads; sessions holding the server finish their work.
    Drain {
        name: String,
        /// Close the sessions that still hold the server after this many milliseconds.
        #[arg(long, value_name = "MS")]
        timeout_ms: Option<u64>,
    },
    /// Maintenance off: the server takes reads again.
    Undrain { name: String },
    /// The server's share of reads among equally good replicas (≥ 1).
    Weight { name: String, weight: u32 },
    /// The server's lag limit, in milliseconds.
    MaxLag { name: String, ms: u64 },
    /// Drops the server's runtime overrides: back to the file's values.
    Reset { name: String },
    /// Client sessions: user, client, state, running statement, held backends.
    Sessions,
    /// Closes a session (cancelling its statement), as KILL does.
    Kill {
        id: u64,
        /// Cancel the running statement only (KILL QUERY).
        #[arg(long)]
        query: bool,
    },
    /// The statements that cost most, by digest.
    Top {
        /// How many digests.
        #[arg(short, long, default_value_t = 20)]
        n: usize,
        /// Forget the statistics collected so far instead.
        #[arg(long)]
        reset: bool,
    },
    /// Makes another server the primary (POST /admin/switchover).
    Switchover { to: String },
    /// Re-reads the config file, as SIGHUP does.
    Reload,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let token = match (&args.token, &args.token_file) {
        (Some(t), _) => Some(t.trim().to_string()),
        (None, Some(f)) => match std::fs::read_to_string(f) {
            Ok(t) => Some(t.trim().to_string()),
            Err(e) => {
                eprintln!("rwsplit-ctl: {}: {e}", f.display());
                return ExitCode::from(2);
            }
        },
        (None, None) => None,
    };
    let client = match Client::new(&args.url, token) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rwsplit-ctl: {e}");
            return ExitCode::from(2);
        }
    };
    let server = |name: &str, body: serde_json::Value| {
        client.call(
            "POST",
            &format!("/admin/servers/{}", ctl::escape(name)),
            Some(&body),
        )
    };
    use serde_json::json;
    let (result, table): (_, fn(&serde_json::Value) -> String) = match &args.command {
        Command::Servers => (client.call("GET", "/servers", None), ctl::servers_table),
        Command::Drain { name, timeout_ms } => {
            let mut body = json!({"maintenance": true});
            if let Some(t) = timeout_ms {
                body["drain_timeout_ms"] = json!(t);
            }
            (server(name, body), ctl::server_line)
        }
        Command::Undrain { name } => (
            server(name, json!({"maintenance": false})),
            ctl::server_line,
        ),
        Command::Weight { name, weight } => {
            (server(name, json!({"weight": weight})), ctl::server_line)
        }
        Command::MaxLag { name, ms } => (server(name, json!({"max_lag_ms": ms})), ctl::server_line),
        Command::Reset { name } => (
            server(
                name,
                json!({"maintenance": null, "weight": null, "max_lag_ms": null}),
            ),
            ctl::server_line,
        ),
        Command::Sessions => (
            client.call("GET", "/admin/sessions", None),
            ctl::sessions_table,
        ),
        Command::Kill { id, query } => (
            client.call(
                "POST",
                &format!("/admin/sessions/{id}/kill"),
                Some(&json!({"query_only": query})),
            ),
            ctl::kill_line,
        ),
        Command::Top { reset: true, .. } => (client.call("POST", "/admin/top/reset", None), |_| {
            "statistics reset\n".into()
        }),
        Command::Top { n, .. } => (
            client.call("GET", &format!("/admin/top?n={n}"), None),
            ctl::top_table,
        ),
        Command::Switchover { to } => (
            client.call("POST", "/admin/switchover", Some(&json!({"to": to}))),
            ctl::generic,
        ),
        Command::Reload => (client.call("POST", "/admin/reload", None), ctl::generic),
    };
    match result {
        Ok(doc) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
            } else {
                print!("{}", table(&doc));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rwsplit-ctl: {e}");
            ExitCode::FAILURE
        }
    }
}
