//! Where a fresh reader starts streaming (MariaDB): from the oldest position any replica still
//! has to apply, not from the primary's current position, so that a replica already behind
//! when the reader starts gets a known lag instead of "before the timeline". Those replayed
//! transactions carry only whole-second commit times (lag may read up to 1 s high for them).

use crate::decode::Gtid;
use crate::position;
use crate::state::{lock, Shared};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long a fresh reader waits for the pollers' first answers before starting anyway.
const WAIT_FOR_POLLERS: Duration = Duration::from_secs(2);

/// Per domain, the earlier of the primary's position and every polled replica's applied
/// position. Replicas that did not answer in time are ignored.
pub async fn earliest(shared: &Shared, primary: Vec<Gtid>) -> Vec<Gtid> {
    let deadline = Instant::now() + WAIT_FOR_POLLERS;
    while Instant::now() < deadline
        && !shared.replicas.iter().all(|(_, s)| {
            let r = lock(s);
            r.applied_text.is_some() || r.error.is_some()
        })
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut start: BTreeMap<u32, Gtid> = BTreeMap::new();
    for g in primary {
        if let Gtid::MariaDb { domain, .. } = g {
            start.insert(domain, g);
        }
    }
    for (_, slot) in &shared.replicas {
        let text = lock(slot).applied_text.clone().unwrap_or_default();
        for g in position::parse_mariadb_pos(&text).unwrap_or_default() {
            if let Gtid::MariaDb { domain, seq, .. } = g {
                if let Some(cur) = start.get_mut(&domain) {
                    if seq < cur.seq() {
                        *cur = g;
                    }
                }
            }
        }
    }
    start.into_values().collect()
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::state::Settings;

    fn shared(replicas: &[&str]) -> Shared {
        let settings = Settings {
            poll_interval: Duration::from_millis(100),
            fast_poll_interval: None,
            poll_timeout: Duration::from_secs(1),
            heartbeat: Duration::from_millis(500),
            server_id: 1,
            start_from_replicas: Default::default(),
            replaces_same_id: Default::default(),
        };
        let names = (0..replicas.len()).map(|i| format!("r{i}")).collect();
        let s = Shared::new(settings, "p".into(), names, 10);
        for ((_, slot), pos) in s.replicas.iter().zip(replicas) {
            lock(slot).applied_text = Some(pos.to_string());
        }
        s
    }

    #[tokio::test]
    async fn starts_at_the_slowest_replica_per_domain() {
        let s = shared(&["0-1-90,1-2-5", "0-1-95"]);
        let primary = position::parse_mariadb_pos("0-1-100,1-2-7").unwrap();
        let start = earliest(&s, primary).await;
        assert_eq!(position::format_mariadb_pos(start.iter()), "0-1-90,1-2-5");
    }

    #[tokio::test]
    async fn never_starts_after_the_primary() {
        let s = shared(&["0-1-100"]);
        let primary = position::parse_mariadb_pos("0-1-80").unwrap();
        let start = earliest(&s, primary).await;
        assert_eq!(position::format_mariadb_pos(start.iter()), "0-1-80");
    }
}
