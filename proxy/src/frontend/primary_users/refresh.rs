//! The refresher task: reads the primary's accounts every `refresh_interval_ms` (at once after
//! a reload), swaps the served list, exports what it loaded and skipped, and keeps the last
//! good list when a read fails, so that a primary that is down never locks everyone out.

use super::accounts::{Accounts, Row, Skip};
use super::load::{self, LoadError};
use super::Loaded;
use crate::context::Context;
use router::config::{Config, UsersFromPrimary};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often the task looks at the configuration (a reload turns it on or off, or changes
/// what it loads, within this).
const TICK: Duration = Duration::from_millis(100);

/// Bounds of one read of the account table (connect and query): the refresh interval, but at
/// least 2 s (a loaded server) and at most 10 s (a hung primary must not stall refreshes).
const READ_TIMEOUT_MIN: Duration = Duration::from_secs(2);
const READ_TIMEOUT_MAX: Duration = Duration::from_secs(10);

/// Starts the refresher; it does nothing while `proxy.users_from_primary` is unset or off.
pub fn spawn(ctx: Arc<Context>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let loaded = Loaded::of(&ctx);
        let mut state = State::default();
        loop {
            if ctx.is_shutting_down() {
                return;
            }
            let config = ctx.config();
            let settings = config
                .proxy
                .as_ref()
                .and_then(|p| p.users_from_primary.as_ref())
                .filter(|u| u.enabled);
            match settings {
                None => state.off(&ctx, &loaded),
                Some(s) => {
                    if state.due(s, ctx.config_generation()) {
                        let result = read(&ctx, &config, s).await;
                        state.apply(&ctx, &config, s, &loaded, result);
                    }
                }
            }
            tokio::time::sleep(TICK).await;
        }
    })
}

/// What the refresher remembers between rounds.
#[derive(Default)]
struct State {
    last_try: Option<Instant>,
    generation: u64,
    /// The last read failed (its recovery is logged).
    failing: bool,
    /// Accounts whose skip was logged, with the reason: each is logged once.
    logged: HashSet<(String, &'static str)>,
    /// Accounts served after the last successful read (a change is logged).
    served: Option<usize>,
}

impl State {
    fn due(&mut self, s: &UsersFromPrimary, generation: u64) -> bool {
        let interval = Duration::from_millis(s.refresh_interval_ms);
        let due =
            self.last_try.is_none_or(|t| t.elapsed() >= interval) || generation != self.generation;
        if due {
            self.last_try = Some(Instant::now());
            self.generation = generation;
        }
        due
    }

    /// Turned off (or never on): serve no loaded account, and read at once when turned on.
    fn off(&mut self, ctx: &Context, loaded: &Loaded) {
        if self.last_try.is_some() || !loaded.accounts().is_empty() {
            loaded.store(Accounts::default());
            ctx.metrics.users_from_primary_accounts.set(0);
            tracing::info!(
                "users_from_primary is off: accounts loaded from the primary are no longer served"
            );
        }
        self.last_try = None;
        self.served = None;
    }

    fn apply(
        &mut self,
        ctx: &Context,
        config: &Config,
        s: &UsersFromPrimary,
        loaded: &Loaded,
        result: Result<Vec<Row>, LoadError>,
    ) {
        let m = &ctx.metrics;
        let rows = match result {
            Ok(rows) => rows,
            Err(e) => {
                m.users_from_primary_refresh_failures.inc();
                let kept = loaded.accounts().len();
                if self.failing {
                    tracing::debug!(error = %e, kept, "users_from_primary: refresh failed again");
                } else {
                    tracing::warn!(error = %e, kept, "users_from_primary: refresh failed; the accounts of the last good refresh stay served");
                }
                self.failing = true;
                return;
            }
        };
        let service = config.service_accounts();
        let (accounts, skipped) = Accounts::build(&rows, |u| s.admits(u, &service));
        for reason in Skip::LABELS {
            let n = skipped.iter().filter(|(_, w)| w.label() == *reason).count();
            m.users_from_primary_skipped
                .with_label_values(&[reason])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        for (account, why) in &skipped {
            if why.worth_logging() && self.logged.insert((account.clone(), why.label())) {
                tracing::warn!(
                    reason = why.label(),
                    "users_from_primary: skipped account {account}: {why}"
                );
            }
        }
        let n = accounts.len();
        m.users_from_primary_accounts
            .set(i64::try_from(n).unwrap_or(i64::MAX));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        m.users_from_primary_last_refresh
            .set(i64::try_from(now).unwrap_or(i64::MAX));
        if self.failing || self.served != Some(n) {
            tracing::info!(
                accounts = n,
                skipped = skipped.len(),
                "users_from_primary: serving {n} accounts loaded from the primary"
            );
        }
        self.failing = false;
        self.served = Some(n);
        loaded.store(accounts);
    }
}

/// One read of the account table from the current writer, as the monitor account.
async fn read(ctx: &Context, config: &Config, s: &UsersFromPrimary) -> Result<Vec<Row>, LoadError> {
    let primary = ctx.primary().map_err(LoadError::NoPrimary)?;
    let password = binlog_reader::secret::resolve(&config.monitor.secret)
        .map_err(|e| LoadError::Secret(e.to_string()))?;
    let timeout =
        Duration::from_millis(s.refresh_interval_ms).clamp(READ_TIMEOUT_MIN, READ_TIMEOUT_MAX);
    load::rows(&primary.config, &config.monitor.user, &password, timeout).await
}
