//! Request bodies against a shared memory budget, read so that neither a flood of large
//! reviews nor clients that stall can make the webhook wait or grow.
//!
//! - Budget is taken as the bytes arrive, in whole KiB: a client that declares a large
//!   body (or none) and then sends nothing holds nothing.
//! - A body that needs more than is free waits before reading on (its unread bytes stay
//!   in the connection, held back by HTTP/2 flow control or TCP).
//! - Waiting bodies that each hold part of the budget could wait for each other for
//!   ever. So the body that started reading first never waits: it reads on past the
//!   budget. Memory stays under the budget plus one `--body-limit`, and every body
//!   finishes in turn.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// KiB of request bodies held at once (see the module doc for the one body that may
/// go past it). With the parse of the reviews in progress, this keeps the webhook well
/// under its 128 Mi memory limit.
pub const BODY_BUDGET_KIB: usize = 16 * 1024;

/// Why a body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Over the limit, or the client stopped sending.
    Cut,
    /// The budget was closed (never, while the server runs).
    Closed,
}

/// The shared budget, and the bodies being read in the order they started.
pub struct Budget {
    kib: Arc<Semaphore>,
    next: Mutex<u64>,
    reading: Mutex<BTreeSet<u64>>,
    /// The first body still reading (`u64::MAX` for none).
    first: watch::Sender<u64>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(BODY_BUDGET_KIB)
    }
}

/// A body's place among those being read; leaves when dropped (also when cancelled).
struct Reading<'a> {
    budget: &'a Budget,
    seq: u64,
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        let mut reading = self.budget.reading.lock().expect("not poisoned");
        reading.remove(&self.seq);
        let first = reading.first().copied().unwrap_or(u64::MAX);
        self.budget.first.send_replace(first);
    }
}

/// Budget a read body holds, until dropped.
pub struct Held(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl Budget {
    pub fn new(kib: usize) -> Self {
        Budget {
            kib: Arc::new(Semaphore::new(kib)),
            next: Mutex::new(0),
            reading: Mutex::new(BTreeSet::new()),
            first: watch::Sender::new(u64::MAX),
        }
    }

    /// KiB free now.
    pub fn available_kib(&self) -> usize {
        self.kib.available_permits()
    }

    fn enter(&self) -> Reading<'_> {
        let seq = {
            let mut next = self.next.lock().expect("not poisoned");
            *next += 1;
            *next
        };
        let mut reading = self.reading.lock().expect("not poisoned");
        reading.insert(seq);
        self.first
            .send_replace(reading.first().copied().unwrap_or(u64::MAX));
        Reading { budget: self, seq }
    }

    /// `n` more KiB, or `None` once this body is the first still reading (it then reads
    /// on without them).
    async fn more(&self, n: usize, seq: u64) -> Result<Option<OwnedSemaphorePermit>, BodyError> {
        let n = u32::try_from(n).map_err(|_| BodyError::Cut)?;
        if let Ok(p) = self.kib.clone().try_acquire_many_owned(n) {
            return Ok(Some(p));
        }
        let mut first = self.first.subscribe();
        tokio::select! {
            p = self.kib.clone().acquire_many_owned(n) => p.map(Some).map_err(|_| BodyError::Closed),
            _ = first.wait_for(|f| *f == seq) => Ok(None),
        }
    }

    /// Read a body of at most `limit` bytes. Returns it and the budget it holds, to
    /// drop once done with the body.
    pub async fn read(
        &self,
        body: axum::body::Body,
        limit: usize,
    ) -> Result<(Bytes, Held), BodyError> {
        let reading = self.enter();
        let mut parts: Vec<Bytes> = Vec::new();
        let (mut len, mut held_kib, mut over) = (0usize, 0usize, false);
        let mut held: Option<OwnedSemaphorePermit> = None;
        let mut stream = body.into_data_stream();
        while let Some(part) = stream.next().await {
            let part = part.map_err(|_| BodyError::Cut)?;
            len += part.len();
            if len > limit {
                return Err(BodyError::Cut);
            }
            let want = len.div_ceil(1024);
            if want > held_kib && !over {
                match self.more(want - held_kib, reading.seq).await? {
                    Some(more) => {
                        match held.as_mut() {
                            Some(h) => h.merge(more),
                            None => held = Some(more),
                        }
                        held_kib = want;
                    }
                    None => over = true,
                }
            }
            parts.push(part);
        }
        drop(reading);
        let body = match parts.len() {
            0 => Bytes::new(),
            1 => parts.pop().expect("one part"),
            _ => Bytes::from(parts.concat()),
        };
        Ok((body, Held(held)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A body sent in `chunks`, letting other tasks run between them (as a network
    /// does), so that bodies read at once interleave.
    fn body(chunks: Vec<Vec<u8>>) -> axum::body::Body {
        let stream = futures::stream::iter(chunks).then(|c| async move {
            tokio::task::yield_now().await;
            Ok::<_, std::io::Error>(Bytes::from(c))
        });
        axum::body::Body::from_stream(stream)
    }

    /// A body that sends `first` bytes and then nothing until `rest` is sent.
    fn stalled(first: usize) -> (axum::body::Body, tokio::sync::mpsc::Sender<Vec<u8>>) {
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
        let head = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; first]))]);
        let tail = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|v| (Ok(Bytes::from(v)), rx))
        });
        (axum::body::Body::from_stream(head.chain(tail)), tx)
    }

    #[tokio::test]
    async fn budget_is_taken_as_bytes_arrive_and_given_back() {
        let budget = Budget::new(64);
        let (b, tx) = stalled(4 * 1024);
        let read = tokio::spawn({
            let budget = Arc::new(budget);
            let b2 = budget.clone();
            async move { (b2.read(b, 1 << 20).await, budget) }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send(vec![b'y'; 1024]).await.unwrap();
        drop(tx);
        let (result, budget) = read.await.unwrap();
        let (bytes, held) = result.unwrap();
        assert_eq!(bytes.len(), 5 * 1024);
        assert_eq!(budget.available_kib(), 64 - 5);
        drop(held);
        assert_eq!(budget.available_kib(), 64);
    }

    #[tokio::test]
    async fn a_stalled_body_holds_only_what_it_sent() {
        let budget = Arc::new(Budget::new(64));
        // Declares nothing, sends 1 KiB, then stalls.
        let (b, _keep) = stalled(1024);
        let stalled_read = tokio::spawn({
            let budget = budget.clone();
            async move { budget.read(b, 1 << 20).await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(budget.available_kib(), 63);
        // Another body of 60 KiB is read at once.
        let (bytes, _held) = tokio::time::timeout(
            Duration::from_secs(1),
            budget.read(body(vec![vec![b'z'; 60 * 1024]]), 1 << 20),
        )
        .await
        .expect("not blocked by the stalled body")
        .unwrap();
        assert_eq!(bytes.len(), 60 * 1024);
        stalled_read.abort();
    }

    #[tokio::test]
    async fn bodies_that_each_hold_part_of_the_budget_all_finish() {
        // Eight bodies of 48 KiB, in 8 KiB parts, against a 64 KiB budget: without the
        // first body reading past the budget, they would wait for each other for ever.
        let budget = Arc::new(Budget::new(64));
        let reads = (0..8).map(|_| {
            let budget = budget.clone();
            tokio::spawn(async move {
                let (bytes, held) = budget
                    .read(body(vec![vec![b'a'; 8 * 1024]; 6]), 1 << 20)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
                drop(held);
                bytes.len()
            })
        });
        let lens = tokio::time::timeout(Duration::from_secs(5), futures::future::join_all(reads))
            .await
            .expect("no deadlock");
        assert!(lens.into_iter().all(|l| l.unwrap() == 48 * 1024));
        assert_eq!(budget.available_kib(), 64);
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_cut() {
        let budget = Budget::new(64);
        let err = budget
            .read(body(vec![vec![b'a'; 600], vec![b'b'; 600]]), 1000)
            .await
            .err();
        assert_eq!(err, Some(BodyError::Cut));
        assert_eq!(budget.available_kib(), 64);
    }
}
