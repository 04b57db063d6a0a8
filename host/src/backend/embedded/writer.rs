//! Group commit: one thread owns every write to the database, and each
//! commit (one sync to disk) covers every write that was waiting for it.
//!
//! A write is a closure over a redb [`WriteTransaction`], sent to the writer
//! with a channel to answer on. The writer takes the first write that comes,
//! then whatever else is already waiting (up to [`MAX_BATCH_WRITES`] writes
//! and [`MAX_BATCH_BYTES`] bytes), applies them in arrival order in one
//! transaction, commits once, and only then answers each with its own
//! result. So:
//!
//! - a write is answered only once the commit holding it is on disk;
//! - each write sees the ones before it in its batch, and a read-modify-write
//!   (an increment, a compare-and-swap) is as atomic as in a transaction of
//!   its own, since nothing else writes in between;
//! - while one commit is on its way to disk, the writes that arrive meanwhile
//!   gather into the next, so under load the syncs per write fall with the
//!   number of writers;
//! - a lone write is never held back for company. Only while writes are
//!   coming concurrently (the last batch held more than one and ended just
//!   before this one began) does a batch wait for more, and only while they
//!   keep joining at the pace they joined recent batches: each next write
//!   within four times the recent gap until the batch holds as many as the
//!   last one, within twice the gap after that, and never past
//!   [`GATHER_WINDOW`] after its first write was sent. When the company stops coming, one batch waits
//!   out the window, and the next write alone is not held at all. On a fast disk the
//!   sync is shorter than the time between two writes, so without this wait
//!   batches would stay at one or two writes however many writers there are
//!   (PostgreSQL's `commit_delay` and `commit_siblings` do the same).
//!
//! A write that refuses (a [`BackendError::Invalid`]: a value that is not a
//! counter, say) must refuse before it changes anything; it then fails alone
//! and the rest of its batch commits. A write that hits a storage failure may
//! have left the transaction half-changed, so the batch is abandoned and each
//! of its writes is run again in a transaction of its own: only the write
//! that fails again fails. Writes are therefore `FnMut`, and may run twice.

use super::storage;
use crate::backend::BackendError;
use redb::{Database, WriteTransaction};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Most writes one commit holds, so a commit (and the wait of everyone in it)
/// stays short under any load.
pub(super) const MAX_BATCH_WRITES: usize = 256;

/// Most bytes (keys and values) one commit holds; the write that crosses it
/// is the batch's last.
pub(super) const MAX_BATCH_BYTES: usize = 4 << 20;

/// Longest a batch waits for company, counted from when its first write was
/// sent, and only while writes are coming concurrently.
pub(super) const GATHER_WINDOW: Duration = Duration::from_millis(1);

/// One write and how to answer it.
trait Job: Send {
    /// Applies the write to `tx`, keeping its result for [`Job::answer`].
    fn apply(&mut self, tx: &WriteTransaction) -> Applied;
    /// Answers the writer's caller: its result if `committed` succeeded,
    /// else the commit's error (a refused write keeps its own error).
    fn answer(self: Box<Self>, committed: &Result<(), BackendError>);
}

/// How applying one write went.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Applied {
    /// It changed (or at least read) the transaction; the batch commits.
    Done,
    /// It refused without changing anything.
    Refused,
    /// Storage failed mid-write: the transaction may be half-changed.
    Broken,
}

/// A write with its result, once applied.
struct Pending<T, F> {
    write: F,
    result: Option<Result<T, BackendError>>,
    reply: oneshot::Sender<Result<T, BackendError>>,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send,
    F: FnMut(&WriteTransaction) -> Result<T, BackendError> + Send,
{
    fn apply(&mut self, tx: &WriteTransaction) -> Applied {
        let result = (self.write)(tx);
        let applied = match &result {
            Ok(_) => Applied::Done,
            Err(BackendError::Invalid(_)) => Applied::Refused,
            Err(BackendError::Storage(_)) => Applied::Broken,
        };
        self.result = Some(result);
        applied
    }

    fn answer(self: Box<Self>, committed: &Result<(), BackendError>) {
        let result = match (self.result, committed) {
            (Some(Err(refused)), _) => Err(refused),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (Some(Ok(_)) | None, Err(e)) => Err(e.clone()),
            (None, Ok(())) => Err(BackendError::Storage("a write was never applied".into())),
        };
        // The caller may have stopped waiting; the write stands regardless.
        let _ = self.reply.send(result);
    }
}

/// A write on its way to the writer.
struct Queued {
    job: Box<dyn Job>,
    bytes: usize,
    /// When it was sent: the writer's measure of how fast writes come.
    sent: Instant,
}

/// What the writer has done since it started.
#[derive(Default)]
pub(super) struct WriterStats {
    /// Transactions committed: one sync to disk each.
    pub commits: AtomicU64,
}

/// The handle on the writer thread; dropping the last one lets the thread
/// finish what it holds and waits for it, so the database file is closed
/// (and can be opened again) once the backend is gone.
pub(super) struct Writer {
    queue: Option<mpsc::Sender<Queued>>,
    thread: Option<JoinHandle<()>>,
    #[cfg_attr(not(test), expect(dead_code, reason = "read by the unit tests"))]
    stats: Arc<WriterStats>,
}

impl Writer {
    /// Starts the writer thread for `db`.
    pub(super) fn start(db: Arc<Database>) -> Result<Writer, BackendError> {
        let (queue, incoming) = mpsc::channel();
        let stats = Arc::new(WriterStats::default());
        let thread = std::thread::Builder::new()
            .name("nimbus-store-writer".into())
            .spawn({
                let stats = stats.clone();
                move || run(&db, &incoming, &stats)
            })
            .map_err(|e| BackendError::Storage(format!("cannot start the store's writer: {e}")))?;
        Ok(Writer {
            queue: Some(queue),
            thread: Some(thread),
            stats,
        })
    }

    /// Runs `write` in the next commit; `bytes` is about how much it writes
    /// (it bounds the batch). Answers once that commit is on disk.
    pub(super) async fn write<T, F>(&self, bytes: usize, write: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnMut(&WriteTransaction) -> Result<T, BackendError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Pending {
            write,
            result: None,
            reply,
        });
        let stopped = || BackendError::Storage("the store's writer has stopped".into());
        self.queue
            .as_ref()
            .ok_or_else(stopped)?
            .send(Queued {
                job,
                bytes,
                sent: Instant::now(),
            })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// What the writer has done.
    #[cfg(test)]
    pub(super) fn stats(&self) -> &WriterStats {
        &self.stats
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            // The thread ends once it has answered what it holds.
            let _ = thread.join();
        }
    }
}

/// The writer thread: batches until every sender is gone.
fn run(db: &Database, incoming: &mpsc::Receiver<Queued>, stats: &WriterStats) {
    let mut pace = Pace::default();
    while let Ok(first) = incoming.recv() {
        let mut batch = Batch::new(first);
        while !batch.full() {
            match incoming.try_recv() {
                Ok(next) => batch.push(next, &mut pace),
                Err(_) => break,
            }
        }
        if pace.concurrent(batch.first_sent) {
            // Wait for company (see the module docs).
            let deadline = batch.first_sent + GATHER_WINDOW;
            while !batch.full() {
                let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                    break;
                };
                // The company of the last batch is likely coming again, so
                // wait longer for it; past that, only at the recent pace.
                let wait = if batch.jobs.len() < pace.last_batch {
                    left.min(pace.patience() * 2)
                } else {
                    left.min(pace.patience())
                };
                match incoming.recv_timeout(wait) {
                    Ok(next) => batch.push(next, &mut pace),
                    Err(_) => break,
                }
            }
        }
        let writes = batch.jobs.len();
        commit(db, batch.jobs, stats);
        pace.committed(writes);
    }
}

/// The writes one commit will hold.
struct Batch {
    jobs: Vec<Box<dyn Job>>,
    bytes: usize,
    first_sent: Instant,
    last_sent: Instant,
}

impl Batch {
    fn new(first: Queued) -> Batch {
        Batch {
            first_sent: first.sent,
            last_sent: first.sent,
            bytes: first.bytes,
            jobs: vec![first.job],
        }
    }

    fn push(&mut self, next: Queued, pace: &mut Pace) {
        pace.company(next.sent.saturating_duration_since(self.last_sent));
        self.last_sent = self.last_sent.max(next.sent);
        self.bytes += next.bytes;
        self.jobs.push(next.job);
    }

    fn full(&self) -> bool {
        self.jobs.len() >= MAX_BATCH_WRITES || self.bytes >= MAX_BATCH_BYTES
    }
}

/// How writes have been coming: whether a batch waits for company, and how
/// long for each next write.
#[derive(Default)]
struct Pace {
    /// The time between the sends of two writes that shared a batch,
    /// lately (an exponentially weighted mean, 1/8 per write). Gaps between
    /// batches do not count: a lone writer's pace says nothing about company.
    gap: Duration,
    /// How many writes the last commit held.
    last_batch: usize,
    /// When the last commit ended.
    last_commit: Option<Instant>,
}

impl Pace {
    /// Counts a write that joined a batch `gap` after the one before it.
    fn company(&mut self, gap: Duration) {
        self.gap = (self.gap * 7 + gap) / 8;
    }

    /// Whether writes are coming concurrently: the last commit held more
    /// than one, and the batch whose first write was sent at `first_sent`
    /// began as it ended (not after a pause).
    fn concurrent(&self, first_sent: Instant) -> bool {
        self.last_batch > 1
            && self
                .last_commit
                .is_some_and(|ended| first_sent <= ended + GATHER_WINDOW)
    }

    /// How long to wait for the next write: twice the recent gap.
    fn patience(&self) -> Duration {
        self.gap * 2
    }

    /// Counts a commit of `writes` writes that just ended.
    fn committed(&mut self, writes: usize) {
        self.last_batch = writes;
        self.last_commit = Some(Instant::now());
    }
}

/// Applies `batch` in one transaction and answers each write; after a
/// storage failure, runs each write alone instead.
fn commit(db: &Database, mut batch: Vec<Box<dyn Job>>, stats: &WriterStats) {
    let (committed, result) = match apply(db, &mut batch) {
        Ok(ended) => ended,
        // A lone write broke its transaction: its own error is its answer.
        Err(()) if batch.len() == 1 => (false, Ok(())),
        Err(()) => {
            for job in batch {
                commit(db, vec![job], stats);
            }
            return;
        }
    };
    // Counted before anyone is answered, so an answered write is counted.
    let metrics = crate::telemetry::metrics();
    metrics.store_writes.inc_by(batch.len() as u64);
    if committed {
        stats.commits.fetch_add(1, Ordering::Relaxed);
        metrics.store_commits.inc();
    }
    for job in batch {
        job.answer(&result);
    }
}

/// Applies every write of `batch` in one transaction and commits it.
/// Returns whether it committed (a batch of refusals is not) and the result
/// every applied write shares; `Err(())` when a write broke the transaction
/// (it was aborted).
fn apply(
    db: &Database,
    batch: &mut [Box<dyn Job>],
) -> Result<(bool, Result<(), BackendError>), ()> {
    let tx = match db.begin_write() {
        Ok(tx) => tx,
        Err(e) => return Ok((false, Err(storage(e)))),
    };
    let mut any_done = false;
    for job in batch.iter_mut() {
        match job.apply(&tx) {
            Applied::Done => any_done = true,
            Applied::Refused => {}
            Applied::Broken => {
                let _ = tx.abort();
                return Err(());
            }
        }
    }
    if any_done {
        Ok((true, tx.commit().map_err(storage)))
    } else {
        Ok((false, tx.abort().map_err(storage)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::EmbeddedBackend;
    use super::{MAX_BATCH_BYTES, MAX_BATCH_WRITES};
    use crate::backend::{BackendError, Consumer, KvBackend, Namespace, QueueBackend};
    use crate::manifest::TopicPattern;
    use futures_util::future::join_all;
    use std::pin::pin;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    fn ns() -> Namespace {
        Namespace {
            app: "app".into(),
            store: "s".into(),
        }
    }

    fn commits(db: &EmbeddedBackend) -> u64 {
        db.writer.stats().commits.load(Ordering::Relaxed)
    }

    /// Keeps the writer busy inside a write of its own until the returned
    /// sender is used, so that the writes made meanwhile wait for the next
    /// batch together. Returns the sender and the held write.
    async fn hold_writer(
        db: &EmbeddedBackend,
    ) -> (
        std::sync::mpsc::Sender<()>,
        tokio::task::JoinHandle<Result<(), BackendError>>,
    ) {
        let (entered, is_entered) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let held = tokio::spawn({
            let db = db.clone();
            async move {
                db.write(0, move |_| {
                    let _ = entered.send(());
                    let _ = released.recv();
                    Ok(())
                })
                .await
            }
        });
        tokio::task::spawn_blocking(move || is_entered.recv())
            .await
            .unwrap()
            .expect("the writer took the holding write");
        (release, held)
    }

    /// Runs `writes` as one batch: each is handed to the writer while it
    /// is held, then all are answered.
    async fn batched<F: std::future::Future + Unpin>(
        db: &EmbeddedBackend,
        mut writes: Vec<F>,
    ) -> Vec<F::Output> {
        let (release, held) = hold_writer(db).await;
        submit(&mut writes).await;
        release.send(()).unwrap();
        held.await.unwrap().unwrap();
        join_all(writes).await
    }

    /// Polls each future once, which hands its write to the writer.
    async fn submit<F: std::future::Future + Unpin>(futures: &mut [F]) {
        for future in futures {
            assert!(futures_util::poll!(future).is_pending());
        }
    }

    #[tokio::test]
    async fn a_batch_applies_in_order_commits_once_and_a_refused_write_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let db = EmbeddedBackend::open(&dir.path().join("state.redb")).unwrap();
        let ns = ns();
        db.set(&ns, "word", b"one").await.unwrap();
        let before = commits(&db);

        let (release, held) = hold_writer(&db).await;
        let mut set = pin!(db.set(&ns, "a", b"1"));
        let mut refused = pin!(db.increment(&ns, "word", 1));
        let mut counted = pin!(db.increment(&ns, "n", 2));
        // Sees the increment before it in the same batch.
        let mut swapped = pin!(db.compare_and_swap(&ns, "n", Some(b"2"), b"10"));
        let mut stale = pin!(db.compare_and_swap(&ns, "n", Some(b"2"), b"99"));
        submit(&mut [set.as_mut()]).await;
        submit(&mut [refused.as_mut()]).await;
        submit(&mut [counted.as_mut()]).await;
        submit(&mut [swapped.as_mut()]).await;
        submit(&mut [stale.as_mut()]).await;
        // Reads never wait for the writer, even while it is busy.
        assert_eq!(db.get(&ns, "a").await.unwrap(), None);
        release.send(()).unwrap();
        held.await.unwrap().unwrap();

        set.await.unwrap();
        let error = refused.await.unwrap_err();
        assert!(
            matches!(&error, BackendError::Invalid(m) if m.contains("not a decimal integer")),
            "{error}"
        );
        assert_eq!(counted.await.unwrap(), 2);
        assert!(swapped.await.unwrap());
        assert!(!stale.await.unwrap());
        assert_eq!(commits(&db) - before, 2, "the held write, then one batch");
        assert_eq!(db.get(&ns, "a").await.unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(
            db.get(&ns, "word").await.unwrap().as_deref(),
            Some(&b"one"[..])
        );
        assert_eq!(db.get(&ns, "n").await.unwrap().as_deref(), Some(&b"10"[..]));
    }

    #[tokio::test]
    async fn a_batch_is_bounded_by_count_and_by_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let db = EmbeddedBackend::open(&dir.path().join("state.redb")).unwrap();
        let ns = ns();
        let keys: Vec<String> = (0..MAX_BATCH_WRITES + 10)
            .map(|i| format!("k{i}"))
            .collect();

        let before = commits(&db);
        let writes: Vec<_> = keys.iter().map(|k| db.set(&ns, k, b"v")).collect();
        for result in batched(&db, writes).await {
            result.unwrap();
        }
        assert_eq!(commits(&db) - before, 3, "held, a full batch, the rest");

        // Three values of 3/4 of the byte bound each: the second crosses it.
        let value = vec![b'x'; MAX_BATCH_BYTES * 3 / 4];
        let before = commits(&db);
        let writes: Vec<_> = ["x", "y", "z"]
            .iter()
            .map(|k| db.set(&ns, k, &value))
            .collect();
        for result in batched(&db, writes).await {
            result.unwrap();
        }
        assert_eq!(commits(&db) - before, 3, "held, two values, the third");
    }

    #[tokio::test]
    async fn publishes_and_acks_of_concurrent_handlers_share_commits() {
        let dir = tempfile::tempdir().unwrap();
        let db = EmbeddedBackend::open(&dir.path().join("state.redb")).unwrap();
        let consumer = Consumer {
            app: "app".into(),
            function: "worker".into(),
        };
        let topic = TopicPattern::parse("jobs").unwrap();
        db.subscribe(&consumer, &topic).await.unwrap();

        let before = commits(&db);
        let bodies: Vec<String> = (0..20).map(|i| i.to_string()).collect();
        let published: Vec<_> = bodies
            .iter()
            .map(|b| db.publish("app", "jobs", b.as_bytes(), &[]))
            .collect();
        for id in batched(&db, published).await {
            id.unwrap();
        }
        assert_eq!(commits(&db) - before, 2);

        // One lease takes them all; their acks, made together, share a commit.
        let lease = Duration::from_secs(30);
        let deliveries = db
            .fetch(&consumer, 50, lease, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(deliveries.len(), 20);
        let before = commits(&db);
        let acks: Vec<_> = deliveries.iter().map(|d| db.ack(&consumer, d)).collect();
        for ack in batched(&db, acks).await {
            ack.unwrap();
        }
        assert_eq!(commits(&db) - before, 2);
        let stats = db.stats(&consumer).await.unwrap();
        assert_eq!((stats.ready, stats.in_flight), (0, 0), "{stats:?}");
    }

    #[tokio::test]
    async fn the_file_is_closed_when_the_backend_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        for round in 0..3u8 {
            let db = EmbeddedBackend::open(&path).unwrap();
            db.set(&ns(), "round", &[round]).await.unwrap();
        }
        let db = EmbeddedBackend::open(&path).unwrap();
        assert_eq!(db.get(&ns(), "round").await.unwrap(), Some(vec![2]));
    }
}
