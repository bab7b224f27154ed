//! The sidecar follows the writer (DESIGN §3.6, issue 11): it checks every configured server's
//! `@@read_only` and replica status about once a second and names the writer, the one server
//! that is writable and replicates from no one. A server that replicates from another is never
//! the writer, even writable; two writable roots (split brain) name none, and the sidecar stays
//! where it is.

use crate::stream::Target;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use router::config::{Config, Role};
use std::time::Duration;

/// What one check of a server saw; `None` when it could not be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub read_only: bool,
    pub replicating: bool,
}

/// The index of the writer among `seen`: the only writable server that replicates from no
/// one. `None` when there is none or more than one.
pub fn writer(seen: &[Option<Seen>]) -> Option<usize> {
    let mut roots = seen
        .iter()
        .enumerate()
        .filter(|(_, s)| s.is_some_and(|s| !s.read_only && !s.replicating))
        .map(|(i, _)| i);
    match (roots.next(), roots.next()) {
        (Some(i), None) => Some(i),
        _ => None,
    }
}

/// `config` with `servers[primary]` as the primary and every other server as a replica.
pub fn with_primary(config: &Config, primary: usize) -> Config {
    let mut c = config.clone();
    for (i, s) in c.servers.iter_mut().enumerate() {
        s.role = if i == primary {
            Role::Primary
        } else {
            Role::Replica
        };
    }
    c
}

/// Checks servers over kept monitor connections.
pub struct Finder {
    targets: Vec<Target>,
    conns: Vec<Option<Conn>>,
}

impl Finder {
    pub fn new(targets: Vec<Target>) -> Finder {
        let conns = targets.iter().map(|_| None).collect();
        Finder { targets, conns }
    }

    /// One round: what each server says, `None` for those that do not answer in `timeout`.
    pub async fn round(&mut self, timeout: Duration) -> Vec<Option<Seen>> {
        let mut out = Vec::with_capacity(self.targets.len());
        for (target, slot) in self.targets.iter().zip(self.conns.iter_mut()) {
            let conn = match slot.take() {
                Some(c) => Some(c),
                None => crate::stream::connect(target, timeout).await.ok(),
            };
            let Some(mut conn) = conn else {
                out.push(None);
                continue;
            };
            match tokio::time::timeout(timeout, check(&mut conn)).await {
                Ok(Ok(seen)) => {
                    *slot = Some(conn);
                    out.push(Some(seen));
                }
                _ => out.push(None),
            }
        }
        out
    }
}

async fn check(conn: &mut Conn) -> Result<Seen, mysql_async::Error> {
    let read_only: Option<i64> = conn.query_first("SELECT @@read_only").await?;
    let rows: Vec<Row> = match conn.query("SHOW REPLICA STATUS").await {
        Ok(rows) => rows,
        Err(mysql_async::Error::Server(_)) => conn.query("SHOW SLAVE STATUS").await?,
        Err(e) => return Err(e),
    };
    let replicating = rows.first().is_some_and(|row| {
        ["Source_Host", "Master_Host"].iter().any(|name| {
            row.columns_ref()
                .iter()
                .position(|c| c.name_str() == *name)
                .and_then(|i| row.get_opt::<Option<String>, usize>(i))
                .and_then(|v| v.ok())
                .flatten()
                .is_some_and(|h| !h.is_empty())
        })
    });
    Ok(Seen {
        read_only: read_only.unwrap_or(0) != 0,
        replicating,
    })
}

#[cfg(test)]
mod test {
    use super::*;

    const RO: Option<Seen> = Some(Seen {
        read_only: true,
        replicating: true,
    });
    const ROOT: Option<Seen> = Some(Seen {
        read_only: false,
        replicating: false,
    });

    #[test]
    fn the_writer_is_the_only_writable_root() {
        assert_eq!(writer(&[ROOT, RO, RO]), Some(0));
        assert_eq!(writer(&[None, RO, ROOT]), Some(2), "old primary down");
        assert_eq!(writer(&[RO, RO, RO]), None);
        assert_eq!(writer(&[ROOT, RO, ROOT]), None, "split brain: stay put");
        let writable_replica = Some(Seen {
            read_only: false,
            replicating: true,
        });
        assert_eq!(
            writer(&[writable_replica, RO, ROOT]),
            Some(2),
            "a writable server that replicates is never the writer"
        );
        let stand_alone_read_only = Some(Seen {
            read_only: true,
            replicating: false,
        });
        assert_eq!(writer(&[stand_alone_read_only, RO]), None);
    }
}
