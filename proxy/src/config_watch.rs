//! Reloads the configuration when its file changes, not only on SIGHUP.
//!
//! A Kubernetes ConfigMap or Secret mounted as a volume changes by a symlink swap (the kubelet
//! writes a new `..data` folder and repoints it), which no signal announces; an operator's
//! editor or a configuration-management run does the same to a plain file. Once a second the
//! watcher reads the file (following symlinks) and the files it names (client TLS certificate
//! and key, backend CA files, password files) and hashes their bytes: a few small reads, no
//! inotify (which misses symlink swaps of a parent folder). A change must hold for two polls
//! in a row before it is applied, so a file caught half-written is not reported as a failed
//! reload. Reloads go through [`Context::reload`], the same as SIGHUP, so a broken file is
//! rejected, logged and counted in `rwsplit_config_reloads_total{result="error"}` once per
//! change, and the running configuration stays.

use crate::context::Context;
use router::config::Config;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the file is read.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// A hash of the configuration file's bytes and of every file it refers to, a function of
/// what is on disk only (not of the running configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(u64);

/// Serialises reloads from SIGHUP and from the watcher, and remembers what each one read, so
/// a file reloaded by SIGHUP is not reloaded a second time by the watcher.
pub struct Reloader {
    ctx: Arc<Context>,
    applied: Mutex<Fingerprint>,
}

impl Reloader {
    /// Starts from the files as they are now (the running configuration was loaded from them).
    pub fn new(ctx: Arc<Context>) -> Arc<Reloader> {
        let now = fingerprint(ctx.config_path());
        Arc::new(Reloader {
            ctx,
            applied: Mutex::new(now),
        })
    }

    /// Reloads now (SIGHUP), whatever changed.
    pub fn reload(&self, trigger: &str) {
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        self.reload_locked(&mut applied, trigger);
    }

    /// Reloads if the files differ from what was last applied and still hash to `seen` (the
    /// previous poll's fingerprint). Returns whether a reload was attempted.
    pub fn reload_if_changed(&self, seen: Fingerprint) -> bool {
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        if *applied == seen || self.current() != seen {
            return false; // unchanged, or still changing: wait for the next poll
        }
        self.reload_locked(&mut applied, "the configuration file changed");
        true
    }

    /// What the files hash to now.
    pub fn current(&self) -> Fingerprint {
        fingerprint(self.ctx.config_path())
    }

    fn reload_locked(&self, applied: &mut Fingerprint, trigger: &str) {
        // Hash before reloading: a change that lands during the reload differs from this and
        // is picked up by the next polls.
        *applied = self.current();
        match self.ctx.reload() {
            Ok(()) => {
                let c = self.ctx.config();
                tracing::info!(
                    servers = c.servers.len(),
                    users = c.proxy.as_ref().map(|p| p.users.len()).unwrap_or(0),
                    "configuration reloaded ({trigger})"
                );
            }
            Err(e) => tracing::error!(
                "configuration reload rejected ({trigger}), keeping the running one: {e}"
            ),
        }
    }
}

/// Polls the files every [`POLL_INTERVAL`] until the task is aborted.
pub async fn watch(reloader: Arc<Reloader>) {
    watch_every(reloader, POLL_INTERVAL).await
}

/// [`watch`] with another interval (tests).
pub async fn watch_every(reloader: Arc<Reloader>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previous: Option<Fingerprint> = None;
    loop {
        ticker.tick().await;
        let r = reloader.clone();
        // File reads block: keep them off the runtime's workers.
        let Ok(now) = tokio::task::spawn_blocking(move || r.current()).await else {
            continue;
        };
        if previous == Some(now) {
            let r = reloader.clone();
            let _ = tokio::task::spawn_blocking(move || r.reload_if_changed(now)).await;
        }
        previous = Some(now);
    }
}

/// The files whose content the configuration depends on, besides the file itself.
fn referenced_files(config: &Config) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut add = |p: &Option<String>| {
        if let Some(p) = p {
            files.push(PathBuf::from(p));
        }
    };
    add(&config.monitor.secret.password_file);
    for s in &config.servers {
        add(&s.tls.ca);
    }
    if let Some(p) = &config.proxy {
        add(&p.tls.cert);
        add(&p.tls.key);
        for u in &p.users {
            add(&u.secret.password_file);
        }
    }
    files
}

/// Hashes the bytes of the configuration file at `path` and of the files it names (read from
/// those same bytes; a file that does not parse hashes as its bytes alone, a missing file as
/// missing).
pub fn fingerprint(path: &Path) -> Fingerprint {
    let mut h = DefaultHasher::new();
    let bytes = hash_file(&mut h, path);
    let parsed = bytes
        .as_deref()
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|text| Config::from_yaml("", text).ok());
    if let Some(config) = parsed {
        for f in referenced_files(&config) {
            hash_file(&mut h, &f);
        }
    }
    Fingerprint(h.finish())
}

fn hash_file(h: &mut DefaultHasher, path: &Path) -> Option<Vec<u8>> {
    path.hash(h);
    match std::fs::read(path) {
        Ok(bytes) => {
            0u8.hash(h);
            bytes.hash(h);
            Some(bytes)
        }
        Err(e) => {
            1u8.hash(h);
            e.kind().hash(h);
            None
        }
    }
}

#[cfg(test)]
mod test;
