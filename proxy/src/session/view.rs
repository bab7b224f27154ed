//! The session's cached view of the context: the backend list (refreshed when the config
//! generation changes), a scratch snapshot the replica chooser fills without allocating, and the
//! gate writes pass (held during a switchover).

use crate::context::{Backend, Context, WriteGate};
use router::TopologySnapshot;
use std::sync::Arc;

pub struct View {
    pub snap: TopologySnapshot,
    /// The topology generation `snap` is an unchanged copy of (`None`: changed since, e.g. a
    /// replica taken out for one read): see [`Context::choose_replica`].
    pub snap_generation: Option<u64>,
    pub backends: Arc<Vec<Arc<Backend>>>,
    /// Writes wait here while a switchover moves the writer.
    pub writes: Arc<WriteGate>,
    config_gen: u64,
}

impl View {
    pub fn new(ctx: &Context) -> View {
        View {
            snap: TopologySnapshot::from_config(&ctx.config()),
            snap_generation: None,
            backends: ctx.backends(),
            writes: ctx.extension(WriteGate::default),
            config_gen: ctx.config_generation(),
        }
    }

    /// Picks up a reloaded server list; an atomic load when nothing changed.
    pub fn refresh(&mut self, ctx: &Context) {
        let g = ctx.config_generation();
        if g != self.config_gen {
            self.backends = ctx.backends();
            self.config_gen = g;
        }
    }
}
