//! Group storing of webhook deliveries.
//!
//! A webhook is answered 202 only once its delivery is stored: appended to the inbox journal
//! (SQLite) or committed as an inbox row (PostgreSQL). Storing every delivery on its own makes
//! one write or commit per request the limit of the whole endpoint, so the handlers hand their
//! verified deliveries to one writer task instead: it takes every delivery waiting at the
//! moment (up to a size limit), stores them with [`Store::insert_deliveries`] at once, and
//! answers each handler after that. While one batch is stored the next one gathers, so the
//! batches grow with the load and no delivery waits for a timer.
//!
//! What must stay true: no handler is answered before the write that holds its delivery; a
//! delivery id seen twice (in one batch or across batches) is one delivery, and the second
//! copy is answered as a duplicate of it; when a batch fails, every member is answered with
//! the error.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use gantry_engine::Store;
use gantry_engine::error::StoreError;
use gantry_engine::store::{DeliveryStatus, Inserted, NewDelivery};
use tokio::sync::{Notify, mpsc, oneshot};

/// A verified delivery, owned, on its way to the inbox.
#[derive(Debug, Clone)]
pub struct ReceivedDelivery {
    /// Source (`github`, `gitlab`).
    pub source: &'static str,
    /// The sender's delivery id.
    pub delivery_id: String,
    /// Event type header.
    pub event_type: String,
    /// Raw body, shared with the request (not copied).
    pub body: Bytes,
    /// The body packed for a store that keeps bodies packed ([`DeliveryBatcher::insert`] packs
    /// it on the handler's thread).
    pub packed: Option<Vec<u8>>,
}

impl ReceivedDelivery {
    fn as_new(&self) -> NewDelivery<'_> {
        NewDelivery {
            source: self.source,
            delivery_id: &self.delivery_id,
            event_type: &self.event_type,
            body: &self.body,
            packed_body: self.packed.as_deref(),
            status: DeliveryStatus::Received,
            detail: None,
        }
    }
}

/// Why a delivery could not be stored.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BatchError {
    /// The store rejected the batch the delivery was in.
    #[error("store a batch of {size} deliveries")]
    Store {
        /// Deliveries in the batch.
        size: usize,
        /// The store's error, shared by every member of the batch.
        #[source]
        source: Arc<StoreError>,
    },
    /// The store answered a different number of deliveries than it was given.
    #[error("the store answered {answered} of a batch of {size} deliveries")]
    Answers {
        /// Deliveries in the batch.
        size: usize,
        /// Answers the store gave.
        answered: usize,
    },
    /// Storing the batch panicked.
    #[error("storing a batch of {size} deliveries panicked")]
    Panicked {
        /// Deliveries in the batch.
        size: usize,
    },
    /// The writer task is gone (the server is shutting down).
    #[error("the inbox writer has stopped")]
    Stopped,
}

/// Limits of one batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Most deliveries in one transaction.
    pub max_deliveries: usize,
    /// A batch takes no further delivery once its bodies add up to this many bytes (a single
    /// larger delivery is still a batch of its own).
    pub max_bytes: usize,
    /// Deliveries waiting for a batch before handlers wait to hand theirs over.
    pub queue: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self { max_deliveries: 512, max_bytes: 16 * 1024 * 1024, queue: 4096 }
    }
}

/// Counters of the writer, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Batches written (stored or failed).
    pub batches: u64,
    /// Deliveries in those batches.
    pub deliveries: u64,
    /// The largest batch so far.
    pub largest: u64,
}

#[derive(Debug, Default)]
struct Counters {
    batches: AtomicU64,
    deliveries: AtomicU64,
    largest: AtomicU64,
}

struct Pending {
    delivery: ReceivedDelivery,
    answer: oneshot::Sender<Result<Inserted, BatchError>>,
}

/// Hands deliveries to the writer task; cheap to clone. The task ends when the last clone is
/// dropped.
#[derive(Clone)]
pub struct DeliveryBatcher {
    queue: mpsc::Sender<Pending>,
    counters: Arc<Counters>,
    pack: bool,
}

impl DeliveryBatcher {
    /// Starts the writer task on the current Tokio runtime. `intake_wake` is notified after
    /// every batch that stored a new delivery.
    pub fn start(store: Arc<dyn Store>, intake_wake: Arc<Notify>, limits: BatchLimits) -> Self {
        let (queue, pending) = mpsc::channel(limits.queue.max(1));
        let counters = Arc::new(Counters::default());
        let pack = store.keeps_packed_bodies();
        tokio::spawn(write_batches(store, intake_wake, pending, limits, counters.clone()));
        Self { queue, counters, pack }
    }

    /// Stores `delivery` with whatever else is waiting; returns once the batch is stored
    /// (or has failed).
    pub async fn insert(&self, mut delivery: ReceivedDelivery) -> Result<Inserted, BatchError> {
        if self.pack && delivery.packed.is_none() {
            delivery.packed = gantry_engine::store::pack_body(&delivery.body);
        }
        let (answer, answered) = oneshot::channel();
        self.queue.send(Pending { delivery, answer }).await.map_err(|_| BatchError::Stopped)?;
        // A dropped answer means the writer stopped before answering.
        answered.await.unwrap_or(Err(BatchError::Stopped))
    }

    /// What the writer has done so far.
    pub fn stats(&self) -> BatchStats {
        BatchStats {
            batches: self.counters.batches.load(Ordering::Relaxed),
            deliveries: self.counters.deliveries.load(Ordering::Relaxed),
            largest: self.counters.largest.load(Ordering::Relaxed),
        }
    }
}

async fn write_batches(
    store: Arc<dyn Store>,
    intake_wake: Arc<Notify>,
    mut pending: mpsc::Receiver<Pending>,
    limits: BatchLimits,
    counters: Arc<Counters>,
) {
    // One batch is written at a time (the store has one writer). As soon as it is stored,
    // the next one (everything that arrived meanwhile) goes to the store, and only then are
    // the stored batch's handlers answered: the store never waits for the answering.
    let mut writing: Option<Writing> = None;
    loop {
        let written = match writing.take() {
            Some(batch) => Some(batch.finish(&counters).await),
            None => None,
        };
        let first = match pending.try_recv() {
            Ok(first) => Some(first),
            // Nothing waiting and nothing to answer: sleep until a delivery comes.
            Err(mpsc::error::TryRecvError::Empty) if written.is_none() => match pending.recv().await {
                Some(first) => Some(first),
                None => return,
            },
            Err(mpsc::error::TryRecvError::Empty) => None,
            Err(mpsc::error::TryRecvError::Disconnected) if written.is_none() => return,
            Err(mpsc::error::TryRecvError::Disconnected) => None,
        };
        if let Some(first) = first {
            writing = Some(Writing::start(&store, first, &mut pending, limits));
        }
        if let Some((answers, results)) = written {
            if results.iter().any(|r| matches!(r, Ok(Inserted::New(_)))) {
                intake_wake.notify_one();
            }
            for (answer, result) in answers.into_iter().zip(results) {
                // A handler whose client went away no longer listens; its row is stored all the same.
                let _ = answer.send(result);
            }
        }
    }
}

/// A batch on its way into the store.
struct Writing {
    task: tokio::task::JoinHandle<Result<Vec<Inserted>, StoreError>>,
    answers: Vec<oneshot::Sender<Result<Inserted, BatchError>>>,
    bytes: usize,
}

impl Writing {
    /// Takes `first` and whatever else is waiting (within `limits`) and starts storing them.
    fn start(
        store: &Arc<dyn Store>,
        first: Pending,
        pending: &mut mpsc::Receiver<Pending>,
        limits: BatchLimits,
    ) -> Self {
        let max_deliveries = limits.max_deliveries.max(1);
        let mut bytes = first.delivery.body.len();
        let mut batch = vec![first];
        while batch.len() < max_deliveries && bytes < limits.max_bytes {
            match pending.try_recv() {
                Ok(next) => {
                    bytes += next.delivery.body.len();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        let (deliveries, answers): (Vec<ReceivedDelivery>, Vec<_>) =
            batch.into_iter().map(|p| (p.delivery, p.answer)).unzip();
        // Its own task, so that a panic in the store fails this batch, not the writer.
        let writer = store.clone();
        let task = tokio::spawn(async move {
            let rows: Vec<NewDelivery<'_>> = deliveries.iter().map(ReceivedDelivery::as_new).collect();
            writer.insert_deliveries(&rows).await
        });
        Self { task, answers, bytes }
    }

    /// Waits for the write; returns each member's answer.
    async fn finish(
        self,
        counters: &Counters,
    ) -> (Vec<oneshot::Sender<Result<Inserted, BatchError>>>, Vec<Result<Inserted, BatchError>>) {
        let size = self.answers.len();
        let stored = self.task.await;
        counters.batches.fetch_add(1, Ordering::Relaxed);
        counters.deliveries.fetch_add(size as u64, Ordering::Relaxed);
        counters.largest.fetch_max(size as u64, Ordering::Relaxed);
        let results: Vec<Result<Inserted, BatchError>> = match stored {
            Ok(Ok(inserted)) if inserted.len() == size => inserted.into_iter().map(Ok).collect(),
            Ok(Ok(inserted)) => vec![Err(BatchError::Answers { size, answered: inserted.len() }); size],
            Ok(Err(error)) => vec![Err(BatchError::Store { size, source: Arc::new(error) }); size],
            Err(_) => vec![Err(BatchError::Panicked { size }); size],
        };
        tracing::debug!(size, bytes = self.bytes, failed = results[0].is_err(), "delivery batch written");
        (self.answers, results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::future::join_all;
    use gantry_engine::SqliteStore;

    fn delivery(id: &str) -> ReceivedDelivery {
        ReceivedDelivery {
            source: "github",
            delivery_id: id.to_string(),
            event_type: "push".to_string(),
            body: Bytes::from_static(br#"{"ref":"refs/heads/main"}"#),
            packed: None,
        }
    }

    async fn open() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("gantry.db")).await.unwrap());
        (dir, store)
    }

    #[tokio::test]
    async fn batches_are_bounded_by_the_delivery_limit() {
        let (_dir, store) = open().await;
        let limits = BatchLimits { max_deliveries: 4, ..BatchLimits::default() };
        let batcher = DeliveryBatcher::start(store.clone(), Arc::new(Notify::new()), limits);
        let ids: Vec<String> = (0..10).map(|i| format!("d-{i}")).collect();
        // Every insert reaches the queue before the writer runs (one thread, polled together).
        let answers = join_all(ids.iter().map(|id| batcher.insert(delivery(id)))).await;
        let mut rows = Vec::new();
        for answer in answers {
            match answer.unwrap() {
                Inserted::New(id) => rows.push(id),
                other => panic!("a fresh delivery id was answered {other:?}"),
            }
        }
        rows.sort();
        rows.dedup();
        assert_eq!(rows.len(), 10, "every delivery has its own row");
        let stats = batcher.stats();
        assert_eq!(stats.deliveries, 10);
        assert_eq!(stats.largest, 4, "{stats:?}");
        assert_eq!(stats.batches, 3, "10 waiting deliveries make batches of 4, 4 and 2: {stats:?}");
    }

    #[tokio::test]
    async fn a_stored_delivery_wakes_intake_and_a_duplicate_does_not() {
        let (_dir, store) = open().await;
        let wake = Arc::new(Notify::new());
        let batcher = DeliveryBatcher::start(store, wake.clone(), BatchLimits::default());
        let first = batcher.insert(delivery("d-wake")).await.unwrap();
        assert!(matches!(first, Inserted::New(_)));
        tokio::time::timeout(std::time::Duration::from_secs(5), wake.notified())
            .await
            .expect("intake was not woken for a new delivery");
        let again = batcher.insert(delivery("d-wake")).await.unwrap();
        let Inserted::New(id) = first else { unreachable!() };
        assert_eq!(again, Inserted::Duplicate(id));
        let woken = tokio::time::timeout(std::time::Duration::from_millis(200), wake.notified()).await;
        assert!(woken.is_err(), "a duplicate woke intake");
    }
}
