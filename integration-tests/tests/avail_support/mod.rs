//! Shared by the `avail_*` tests: the client load they run while a server fails (sessions that
//! read and write through the proxy, reconnect when their connection breaks, as applications
//! do, and log every operation with how long it took).
#![allow(dead_code)]

use integration_tests::mysql_async::prelude::Queryable;
use integration_tests::mysql_async::{Conn, Opts, OptsBuilder};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One operation of the load.
#[derive(Debug, Clone)]
pub struct Op {
    pub session: usize,
    pub at: Instant,
    pub write: bool,
    /// A new connection after the previous one broke (logged as neither read nor write).
    pub reconnect: bool,
    pub took: Duration,
    /// The server that answered a read (`@@port`).
    pub port: Option<u16>,
    pub error: Option<String>,
}

/// What the load runs: `sessions` sessions through the proxy at `url`, each 70 % `SELECT
/// @@port` / 30 % `insert` (a fixed sequence per session), until `stop` is set.
pub struct Load {
    pub url: String,
    pub sessions: usize,
    pub insert: &'static str,
}

/// Starts the load; the operations accumulate in the returned log until the tasks end.
pub fn start_load(
    load: Load,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<Vec<Op>>>, Vec<tokio::task::JoinHandle<()>>) {
    let ops = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for session in 0..load.sessions {
        let ops = ops.clone();
        let stop = stop.clone();
        let url = load.url.clone();
        let insert = load.insert;
        tasks.push(tokio::spawn(async move {
            let opts =
                OptsBuilder::from_opts(Opts::from_url(&url).expect("url")).prefer_socket(false);
            let mut conn = Conn::new(opts.clone())
                .await
                .expect("load session connects");
            let mut n = session as u64;
            while !stop.load(Ordering::Relaxed) {
                n = n
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let write = (n >> 33) % 10 < 3;
                let at = Instant::now();
                let (port, error) = if write {
                    (None, conn.query_drop(insert).await.err())
                } else {
                    match conn.query_first::<u16, _>("SELECT @@port").await {
                        Ok(port) => (port, None),
                        Err(e) => (None, Some(e)),
                    }
                };
                let took = at.elapsed();
                let broken = error.is_some() && conn.ping().await.is_err();
                ops.lock().unwrap().push(Op {
                    session,
                    at,
                    write,
                    reconnect: false,
                    took,
                    port,
                    error: error.map(|e| e.to_string()),
                });
                if broken {
                    let at = Instant::now();
                    let r = Conn::new(opts.clone()).await;
                    ops.lock().unwrap().push(Op {
                        session,
                        at,
                        write: false,
                        reconnect: true,
                        took: at.elapsed(),
                        port: None,
                        error: r.as_ref().err().map(|e| format!("reconnect: {e}")),
                    });
                    match r {
                        Ok(c) => conn = c,
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            }
        }));
    }
    (ops, tasks)
}

/// Reads that succeeded in `[from, to)`.
pub fn reads_ok(ops: &[Op], from: Instant, to: Instant) -> usize {
    ops.iter()
        .filter(|o| !o.write && !o.reconnect && o.error.is_none() && o.at >= from && o.at < to)
        .count()
}

/// The load tests run one at a time: each drives 8 sessions against its own topology, and two
/// at once on a 2-core machine measure the machine, not the proxy.
pub static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
