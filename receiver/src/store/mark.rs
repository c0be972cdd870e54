//! A tenant's change mark: what the report cache (`read/cache.rs`) keys its
//! entries by, so that a cached environment state or compare is served only
//! while nothing it shows has changed — in this hub or in any other replica
//! on the same database.
//!
//! Everything environment state and compare show is written with a row in
//! an append-only table: a desired version with a `desired_assignments` row,
//! a revision or status change with an `observed_history` row (the merge
//! rules append one for every change of revision, status or message, and
//! none for a heartbeat), a new target with a `deployment_targets` row.
//! Nothing is deleted. So the newest id of each of the three, per tenant,
//! moves on every such commit. Each is the last entry of an index on
//! `(tenant_id, id)` (migrations `0004`/`0005_change_mark`), which reads the
//! same for ten rows or ten million; and ingest writes nothing extra.
//!
//! One catch on PostgreSQL: ids come from sequences, which hand them out in
//! the order writers ask, not the order they commit. A writer that took id
//! 100 may commit after one that took 101; a mark of 101 read between the two
//! commits would not move when 100 lands. So a mark is used to *store* an
//! entry only when it is settled: writers that append to those tables hold a
//! shared advisory lock on their tenant until they commit (shared locks do
//! not wait for each other, so ingest stays concurrent), and the settled read
//! takes the same lock exclusively without waiting — if it gets it, no
//! writer of the tenant is between taking an id and committing, and every id
//! below the mark it then reads is final. If it does not, the report is
//! served uncached. SQLite has one writer at a time and allocates ids as it
//! commits, so there every mark is settled.
//!
//! A new target is created outside the ingest transaction (it is an
//! idempotent upsert of its own) and is then followed by the transaction's
//! history or desired row; its own id matters only when that transaction
//! fails, which leaves an empty target behind.

/// A tenant's change mark: the newest ids of `observed_history`,
/// `desired_assignments` and `deployment_targets`. Equal marks mean that no
/// change to environment state or compare committed in between (for a
/// settled mark; see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChangeMark {
    pub history: i64,
    pub desired: i64,
    pub targets: i64,
}

/// The change mark of tenant `$1` (by name); no row for an unknown tenant.
pub(crate) const CHANGE_MARK_SQL: &str = "SELECT \
       COALESCE((SELECT h.id FROM observed_history h WHERE h.tenant_id = t.id \
                 ORDER BY h.id DESC LIMIT 1), 0), \
       COALESCE((SELECT d.id FROM desired_assignments d WHERE d.tenant_id = t.id \
                 ORDER BY d.id DESC LIMIT 1), 0), \
       COALESCE((SELECT x.id FROM deployment_targets x WHERE x.tenant_id = t.id \
                 ORDER BY x.id DESC LIMIT 1), 0) \
     FROM tenants t WHERE t.name = $1";

pub(crate) type ChangeMarkRow = (i64, i64, i64);

impl From<ChangeMarkRow> for ChangeMark {
    fn from((history, desired, targets): ChangeMarkRow) -> Self {
        Self {
            history,
            desired,
            targets,
        }
    }
}

/// The first key of the PostgreSQL advisory lock that writers of a tenant's
/// history and desired assignments hold (shared) until they commit; the
/// second is [`lock_key`] of the tenant id. ASCII "SXTM".
pub(crate) const MARK_LOCK_CLASS: i32 = 0x5358_544d;

/// The tenant's key within [`MARK_LOCK_CLASS`]. Tenant ids are small; two
/// tenants that shared a key would only see each other's writes in flight.
pub(crate) fn lock_key(tenant_id: i64) -> i32 {
    (tenant_id & 0x7fff_ffff) as i32
}
