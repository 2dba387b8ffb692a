//! The sending half of a server stream that ends cleanly: messages queue
//! (boundedly) for the client; a client that went away, or the server
//! beginning to shut down, ends the sending; the end is told to the client
//! as a last message and then the status.

use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::error::ApiError;

/// Messages queued for a client that does not read.
pub const QUEUED_MESSAGES: usize = 16;
/// How long the end of a stream waits for room in its queue.
const FAREWELL_WAIT: Duration = Duration::from_secs(1);

/// Why a stream ended.
pub enum End {
    /// The client went away.
    Gone,
    /// The server began shutting down.
    ShuttingDown,
    /// Told to the client as the stream's status.
    Failed(ApiError),
}

impl From<ApiError> for End {
    fn from(error: ApiError) -> End {
        End::Failed(error)
    }
}

/// What the client reads.
pub type Messages<T> = mpsc::Receiver<Result<T, ApiError>>;

pub struct Outlet<T> {
    sender: mpsc::Sender<Result<T, ApiError>>,
    draining: watch::Receiver<bool>,
}

impl<T> Outlet<T> {
    /// An outlet and the messages it queues; `draining` turns true when
    /// the server begins shutting down.
    pub fn open(draining: watch::Receiver<bool>) -> (Outlet<T>, Messages<T>) {
        let (sender, messages) = mpsc::channel(QUEUED_MESSAGES);
        (Outlet { sender, draining }, messages)
    }

    /// Queues a message, unless the client went away or the server began
    /// shutting down.
    pub async fn send(&self, message: T) -> Result<(), End> {
        tokio::select! {
            sent = self.sender.send(Ok(message)) => sent.map_err(|_| End::Gone),
            () = self.shutting_down() => Err(End::ShuttingDown),
        }
    }

    /// Resolves when the server begins shutting down.
    pub async fn shutting_down(&self) {
        let mut draining = self.draining.clone();
        if draining.wait_for(|draining| *draining).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Tells the client how the stream ended: nothing when it went away;
    /// on shutdown `last` (a checkpoint) then UNAVAILABLE SHUTTING_DOWN;
    /// a failure as the status.
    pub async fn finish(&self, ended: Result<(), End>, last: impl FnOnce() -> T) {
        let error = match ended {
            Ok(()) | Err(End::Gone) => return,
            Err(End::Failed(error)) => error,
            Err(End::ShuttingDown) => {
                self.farewell(Ok(last())).await;
                ApiError::ShuttingDown
            }
        };
        self.farewell(Err(error)).await;
    }

    /// Queues a last message, waiting a bounded time for room.
    async fn farewell(&self, message: Result<T, ApiError>) {
        let _ = tokio::time::timeout(FAREWELL_WAIT, self.sender.send(message)).await;
    }
}
