//! Reads of the roles users hold, coalesced: a read asked while others run
//! waits for the next statement and goes out with the reads queued beside
//! it, up to [`MAX_HOLDERS_READ`] in one statement. Under load, compiling
//! grants then pays a statement (a round trip to the database, or to
//! SQLite's worker thread) per batch instead of per user; alone, a read
//! goes out at once.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard},
};

use crate::{
    clock,
    error::ApiError,
    store::{
        Store, StoreError,
        rbac::{Holder, MAX_HOLDERS_READ, UserRoles},
    },
};
use tokio::sync::oneshot;

/// Statements of held roles running at once.
const MAX_READERS: usize = 2;

/// What one read answers: `None` for a user who is not the tenant's.
pub type HeldAnswer = Result<Option<UserRoles>, ApiError>;

pub struct HeldRoles {
    store: Store,
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Waiting>,
    readers: usize,
}

struct Waiting {
    holder: Holder,
    answer: oneshot::Sender<HeldAnswer>,
}

impl HeldRoles {
    pub fn new(store: Store) -> Arc<HeldRoles> {
        Arc::new(HeldRoles {
            store,
            queue: Mutex::default(),
        })
    }

    /// What `holder` holds now, read in some statement that starts after
    /// this call.
    pub async fn read(self: &Arc<Self>, holder: Holder) -> HeldAnswer {
        let (answer, answered) = oneshot::channel();
        let start_reader = {
            let mut queue = self.queue();
            queue.waiting.push_back(Waiting { holder, answer });
            let start = queue.readers < MAX_READERS;
            if start {
                queue.readers += 1;
            }
            start
        };
        if start_reader {
            tokio::spawn(Reader::new(self.clone()).serve());
        }
        // A reader gone without answering (the runtime shutting down).
        answered.await.unwrap_or(Err(ApiError::Unavailable))
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One running reader, counted in [`Queue::readers`] until it stops.
struct Reader {
    held_roles: Arc<HeldRoles>,
    counted: bool,
}

impl Reader {
    fn new(held_roles: Arc<HeldRoles>) -> Reader {
        Reader {
            held_roles,
            counted: true,
        }
    }

    /// Serves batches until the queue is empty; the check and the stop
    /// happen under one lock, so a read queued meanwhile starts a reader.
    async fn serve(mut self) {
        loop {
            let batch: Vec<Waiting> = {
                let mut queue = self.held_roles.queue();
                if queue.waiting.is_empty() {
                    queue.readers -= 1;
                    self.counted = false;
                    return;
                }
                let size = queue.waiting.len().min(MAX_HOLDERS_READ);
                queue.waiting.drain(..size).collect()
            };
            let holders: Vec<Holder> = batch.iter().map(|waiting| waiting.holder).collect();
            match self
                .held_roles
                .store
                .rbac
                .held_roles(&holders, clock::now())
                .await
            {
                Ok(held) => {
                    for (waiting, held) in batch.into_iter().zip(held) {
                        // The asker may have gone; nothing is owed to it.
                        let _ = waiting.answer.send(Ok(held));
                    }
                }
                Err(error) => {
                    let error = Arc::new(error);
                    for waiting in batch {
                        let _ = waiting.answer.send(Err(shared(&error)));
                    }
                }
            }
        }
    }
}

impl Drop for Reader {
    /// A reader that panicked or was cancelled still stops being counted.
    fn drop(&mut self) {
        if self.counted {
            self.held_roles.queue().readers -= 1;
        }
    }
}

/// One failed statement's error, for each read it carried.
fn shared(error: &Arc<StoreError>) -> ApiError {
    match **error {
        StoreError::Unavailable(_) => ApiError::Unavailable,
        _ => ApiError::Internal(Box::new(error.clone())),
    }
}
