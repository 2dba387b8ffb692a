//! A connection whose writes are gathered into one socket write per turn of
//! the connection's task.
//!
//! h2 writes a DATA frame of 256 bytes or more on its own and flushes before
//! it buffers the next frame (hyperium/h2#902), so a response of a few
//! kilobytes costs one write for its headers and body and another for its
//! trailers, and calls answered together cost a write each. On loopback and
//! over TLS a write is most of what such a call costs the server. Here
//! every write is copied into a buffer, and the buffer reaches the socket
//! only when the task comes round again with nothing new to add: the first
//! flush after new bytes wakes the task instead of writing, so frames the
//! same turn still produces join them. Bytes never wait for more than that
//! one extra turn: a flush with nothing new, any read and shutdown all
//! write them, and a full buffer is written before it takes more.

use std::{
    io::{self, IoSlice},
    pin::Pin,
    task::{Context, Poll, ready},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// Bytes gathered before they are written whatever the task does next.
const CAPACITY: usize = 64 * 1024;

/// `inner` with its writes gathered (see the module's text).
pub struct BatchedWrites<T> {
    inner: T,
    pending: Vec<u8>,
    /// Bytes at the front of `pending` the socket already took.
    written: usize,
    /// Whether bytes were added since the last flush.
    added_since_flush: bool,
}

impl<T> BatchedWrites<T> {
    pub fn new(inner: T) -> BatchedWrites<T> {
        BatchedWrites {
            inner,
            // Grown as bytes come (to at most CAPACITY), so that an idle
            // connection holds only what it last wrote.
            pending: Vec::new(),
            written: 0,
            added_since_flush: false,
        }
    }

    /// Room left in the buffer, writing it out first when it is full.
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>>
    where
        T: AsyncWrite + Unpin,
    {
        if self.pending.len() == CAPACITY {
            ready!(self.poll_write_pending(cx))?;
        }
        Poll::Ready(Ok(CAPACITY - self.pending.len()))
    }

    fn poll_write_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>
    where
        T: AsyncWrite + Unpin,
    {
        while self.written < self.pending.len() {
            let taken =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if taken == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += taken;
        }
        self.pending.clear();
        self.written = 0;
        self.added_since_flush = false;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for BatchedWrites<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let room = ready!(this.poll_room(cx))?;
        let taken = room.min(bytes.len());
        this.pending.extend_from_slice(&bytes[..taken]);
        this.added_since_flush |= taken > 0;
        Poll::Ready(Ok(taken))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        slices: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut room = ready!(this.poll_room(cx))?;
        let mut taken = 0;
        for slice in slices {
            let part = &slice[..room.min(slice.len())];
            this.pending.extend_from_slice(part);
            taken += part.len();
            room -= part.len();
            if room == 0 {
                break;
            }
        }
        this.added_since_flush |= taken > 0;
        Poll::Ready(Ok(taken))
    }

    /// Vectored, so that h2 hands over large frames without copying them
    /// into its own buffer first.
    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if std::mem::take(&mut this.added_since_flush) {
            cx.waker().wake_by_ref();
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_write_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for BatchedWrites<T> {
    /// Writes what is pending first: a task about to wait for its peer
    /// must not keep back what the peer waits for.
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(Err(error)) = this.poll_write_pending(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: Connected> Connected for BatchedWrites<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        task::{Wake, Waker},
    };

    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

    use super::*;

    struct WakeCount(AtomicUsize);

    impl Wake for WakeCount {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn connection() -> (BatchedWrites<DuplexStream>, DuplexStream) {
        let (ours, peers) = duplex(4 * CAPACITY);
        (BatchedWrites::new(ours), peers)
    }

    /// What the peer can read now, without waiting.
    fn arrived(peer: &mut DuplexStream) -> Vec<u8> {
        let mut bytes = vec![0; 4 * CAPACITY];
        let mut buf = ReadBuf::new(&mut bytes);
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(peer).poll_read(&mut cx, &mut buf) {
            Poll::Ready(result) => result.expect("the duplex reads"),
            Poll::Pending => return Vec::new(),
        }
        buf.filled().to_vec()
    }

    fn flush(connection: &mut BatchedWrites<DuplexStream>, waker: &Waker) {
        let mut cx = Context::from_waker(waker);
        match Pin::new(connection).poll_flush(&mut cx) {
            Poll::Ready(result) => result.expect("the flush succeeds"),
            Poll::Pending => panic!("a duplex with room never waits"),
        }
    }

    #[tokio::test]
    async fn a_flush_after_new_bytes_wakes_the_task_and_writes_nothing_yet() {
        let (mut ours, mut peer) = connection();
        let wakes = Arc::new(WakeCount(AtomicUsize::new(0)));
        let waker = Waker::from(wakes.clone());
        ours.write_all(b"headers+data").await.unwrap();
        flush(&mut ours, &waker);
        assert_eq!(wakes.0.load(Ordering::Relaxed), 1);
        assert!(arrived(&mut peer).is_empty());
    }

    #[tokio::test]
    async fn frames_of_one_turn_reach_the_socket_in_one_write_on_the_next_flush() {
        let (mut ours, mut peer) = connection();
        let waker = Waker::noop();
        ours.write_all(b"headers+data").await.unwrap();
        flush(&mut ours, waker);
        ours.write_all(b"+trailers").await.unwrap();
        flush(&mut ours, waker);
        assert!(arrived(&mut peer).is_empty());
        flush(&mut ours, waker);
        assert_eq!(arrived(&mut peer), b"headers+data+trailers");
    }

    #[tokio::test]
    async fn a_read_writes_what_is_pending_first() {
        let (mut ours, mut peer) = connection();
        ours.write_all(b"settings").await.unwrap();
        flush(&mut ours, Waker::noop());
        peer.write_all(b"ack").await.unwrap();
        let mut answer = [0; 3];
        ours.read_exact(&mut answer).await.unwrap();
        assert_eq!(arrived(&mut peer), b"settings");
    }

    #[tokio::test]
    async fn shutdown_writes_what_is_pending() {
        let (mut ours, mut peer) = connection();
        ours.write_all(b"goaway").await.unwrap();
        ours.shutdown().await.unwrap();
        let mut everything = Vec::new();
        peer.read_to_end(&mut everything).await.unwrap();
        assert_eq!(everything, b"goaway");
    }

    #[tokio::test]
    async fn a_full_buffer_is_written_before_it_takes_more() {
        let (mut ours, mut peer) = connection();
        let large = vec![7; CAPACITY + 10];
        ours.write_all(&large).await.unwrap();
        assert_eq!(arrived(&mut peer).len(), CAPACITY);
        assert_eq!(ours.pending.len(), 10);
    }

    #[tokio::test]
    async fn vectored_writes_keep_the_slices_in_order() {
        let (mut ours, mut peer) = connection();
        let slices = [IoSlice::new(b"frame head|"), IoSlice::new(b"payload")];
        let taken = ours.write_vectored(&slices).await.unwrap();
        assert_eq!(taken, 18);
        flush(&mut ours, Waker::noop());
        flush(&mut ours, Waker::noop());
        assert_eq!(arrived(&mut peer), b"frame head|payload");
    }
}
