//! The guest's stderr: what it writes to WASI descriptor 2 and what it
//! logs with `gadgetLog`, bounded in rate and never blocking.
//!
//! Why: guest calls run on ig's only thread, the event loop. Upstream
//! hands the guest the host's stderr, written blocking: a guest writing in
//! a loop filled the user's terminal or log file (5.5 MB in 2 s), and with
//! a reader that stopped (`ig run ... 2>&1 | less`) its next write held the
//! event loop, and SIGINT, until the reader came back. Here the guest's
//! bytes go to a [`StderrWriter`] the CLI supplies, which never waits for
//! the reader (what it cannot write now it drops and counts), and only
//! within a budget: a first [`BURST`] bytes, then [`RATE`] bytes a second.
//! What is over the budget is dropped whole (one write, one log line), with
//! a warning the first time and the total when the run stops.
//!
//! Does not own: how ig's own stderr is written (the CLI's logger).

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Where the guest's stderr goes. It must return at once whatever the
/// reader does (the CLI's logger drops and counts what it cannot write).
pub type StderrWriter = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// Bytes a second the guest may write to stderr once [`BURST`] is used up.
pub const RATE: u64 = 64 << 10;

/// Bytes the guest may write at once (at start, or after being quiet).
pub const BURST: u64 = 1 << 20;

/// The guest's stderr, shared by its WASI descriptor 2 and `gadgetLog`.
#[derive(Clone)]
pub(super) struct GuestStderr {
    budget: Arc<Mutex<Budget>>,
    writer: StderrWriter,
}

struct Budget {
    module: String,
    /// Bytes that may be written now.
    tokens: u64,
    /// When `tokens` was last refilled.
    refilled: Instant,
    /// Bytes refused since [`GuestStderr::take_dropped`].
    dropped: u64,
    warned: bool,
}

impl Budget {
    fn admit(&mut self, n: u64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_nanos();
        let earned = elapsed.saturating_mul(u128::from(RATE)) / 1_000_000_000;
        if self
            .tokens
            .saturating_add(u64::try_from(earned).unwrap_or(u64::MAX))
            >= BURST
        {
            self.tokens = BURST;
            self.refilled = now;
        } else if earned > 0 {
            // Moved on by the time the bytes earned are worth, not to
            // `now`: writes closer together than a byte's worth of time
            // still add up.
            self.tokens += u64::try_from(earned).unwrap_or(0);
            let worth = earned * 1_000_000_000 / u128::from(RATE);
            self.refilled += std::time::Duration::from_nanos(u64::try_from(worth).unwrap_or(0));
        }
        if n <= self.tokens {
            self.tokens -= n;
            return true;
        }
        self.dropped = self.dropped.saturating_add(n);
        false
    }
}

impl GuestStderr {
    pub(super) fn new(module: String, writer: StderrWriter) -> Self {
        GuestStderr {
            budget: Arc::new(Mutex::new(Budget {
                module,
                tokens: BURST,
                refilled: Instant::now(),
                dropped: 0,
                warned: false,
            })),
            writer,
        }
    }

    /// Whether `n` bytes fit the budget now; if not they count as dropped.
    pub(super) fn admit(&self, n: usize) -> bool {
        let module = {
            let mut b = self.budget.lock().unwrap_or_else(PoisonError::into_inner);
            if b.admit(n as u64, Instant::now()) {
                return true;
            }
            if std::mem::replace(&mut b.warned, true) {
                return false;
            }
            b.module.clone()
        };
        // Once per run; the total comes when it stops.
        log::warn!(
            "wasm module {module}: the guest writes to stderr faster than {} KiB/s (after a first {} KiB); what is over is dropped and counted",
            RATE >> 10,
            BURST >> 10
        );
        false
    }

    /// One write of the guest to descriptor 2.
    fn write(&self, b: &[u8]) {
        if !b.is_empty() && self.admit(b.len()) {
            (self.writer)(b);
        }
    }

    /// Bytes refused since the last call.
    pub(super) fn take_dropped(&self) -> u64 {
        std::mem::take(
            &mut self
                .budget
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .dropped,
        )
    }
}

impl IsTerminal for GuestStderr {
    /// The guest is never told it writes to a terminal: its bytes are
    /// rationed and may be dropped, not a terminal session.
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestStderr {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// WASI's view: always ready, every write accepted whole (and written or
/// dropped at once), so `fd_write` never waits.
impl OutputStream for GuestStderr {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        GuestStderr::write(self, &bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(1 << 20)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestStderr {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestStderr {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        GuestStderr::write(&self, buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn budget() -> Budget {
        Budget {
            module: "m".into(),
            tokens: BURST,
            refilled: Instant::now(),
            dropped: 0,
            warned: false,
        }
    }

    #[test]
    fn a_burst_then_the_rate_and_what_is_over_is_counted() {
        let mut b = budget();
        let t0 = b.refilled;
        let chunk = 4096;
        let mut written = 0;
        while b.admit(chunk, t0) {
            written += chunk;
        }
        assert_eq!(written, BURST);
        assert_eq!(b.dropped, chunk);
        // One second later: one second's worth, not more.
        let t1 = t0 + Duration::from_secs(1);
        let mut later = 0;
        while b.admit(chunk, t1) {
            later += chunk;
        }
        assert_eq!(later, RATE);
        // Quiet for a long time: never more than the burst.
        let t2 = t1 + Duration::from_secs(3600);
        assert!(b.admit(BURST, t2));
        assert!(!b.admit(1, t2));
    }

    #[test]
    fn writes_closer_than_a_byte_apart_still_earn_their_share() {
        let mut b = budget();
        let t0 = b.refilled;
        assert!(b.admit(BURST, t0));
        // 10 µs apart earns less than one byte each time; a second of them
        // must still earn a second's worth.
        let mut written = 0;
        for i in 1..=100_000u32 {
            if b.admit(1, t0 + Duration::from_micros(u64::from(i) * 10)) {
                written += 1;
            }
        }
        // (Rounding to whole nanoseconds gains a few bytes a second.)
        assert!((RATE - 2..=RATE + 8).contains(&written), "{written}");
    }
}
