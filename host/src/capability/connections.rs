//! The database connections an instance holds open (SQLite's and
//! PostgreSQL's), so that it cannot open them without bound, and so that a
//! reused instance cannot carry a transaction from one request into the
//! next ([`OpenConnections::end_request`]).

use std::sync::{Arc, Weak};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// The most connections of one kind an instance holds open at once: each
/// is a connection of the host's (a SQLite connection with its file
/// handles and page cache, or one of a PostgreSQL pool's).
pub const MAX_OPEN_CONNECTIONS: usize = 16;

/// A guest connection's hold on a host connection.
pub trait Lease: Send + 'static {
    /// Ends the transaction the guest left open on it, if any.
    fn end_transaction(lease: OwnedMutexGuard<Self>);
}

/// The connections of one kind an instance has open.
pub struct OpenConnections<L> {
    leases: Vec<Weak<AsyncMutex<L>>>,
}

impl<L> Default for OpenConnections<L> {
    fn default() -> Self {
        OpenConnections { leases: Vec::new() }
    }
}

impl<L: Lease> OpenConnections<L> {
    /// Room for one more, forgetting those the guest dropped.
    pub fn reserve(&mut self) -> Result<(), String> {
        self.leases.retain(|lease| lease.strong_count() > 0);
        if self.leases.len() >= MAX_OPEN_CONNECTIONS {
            return Err(format!(
                "too many open connections: an instance may hold {MAX_OPEN_CONNECTIONS} at once; drop one first"
            ));
        }
        Ok(())
    }

    /// Counts `lease` until the guest drops it.
    pub fn track(&mut self, lease: &Arc<AsyncMutex<L>>) {
        self.leases.push(Arc::downgrade(lease));
    }

    /// Ends every transaction the finished request left open on a
    /// connection the instance keeps (a guest that stored its connection
    /// in a global): the next request starts with none, and holds no lock
    /// meanwhile.
    pub fn end_request(&mut self) {
        self.leases.retain(|lease| lease.strong_count() > 0);
        for lease in self.leases.iter().filter_map(Weak::upgrade) {
            // A statement still running belongs to a request that is not
            // finished (a shared instance); it ends its own.
            if let Ok(lease) = lease.try_lock_owned() {
                L::end_transaction(lease);
            }
        }
    }
}
