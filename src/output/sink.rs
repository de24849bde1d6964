//! The buffered, shared destination of the printers.

use std::cell::RefCell;
use std::io::{self, Write};
use std::rc::Rc;

use crate::pipeline::HandlerError;

/// The writer all printers of one run share (stdout in the CLI, a `Vec` in
/// tests). Runs are single-threaded, hence `Rc<RefCell<_>>`.
pub type SharedWriter = Rc<RefCell<Box<dyn Write>>>;

pub fn shared(w: impl Write + 'static) -> SharedWriter {
    Rc::new(RefCell::new(Box::new(w)))
}

/// Bytes held back before they are handed to the writer. Large enough that a
/// storm costs one `write(2)` per several hundred events.
const CHUNK: usize = 128 * 1024;

/// A printer's own buffer in front of the shared writer. It remembers a
/// write failure so that `on_event`, which cannot fail, stops producing and
/// the next `flush` reports it.
pub(crate) struct Sink {
    buf: Vec<u8>,
    out: SharedWriter,
    failed: Option<io::ErrorKind>,
}

impl Sink {
    pub(crate) fn new(out: SharedWriter) -> Self {
        Self {
            buf: Vec::with_capacity(CHUNK + 4096),
            out,
            failed: None,
        }
    }

    /// The buffer to format the next record into, or `None` once the reader
    /// is gone.
    pub(crate) fn buf(&mut self) -> Option<&mut Vec<u8>> {
        if self.failed.is_some() {
            None
        } else {
            Some(&mut self.buf)
        }
    }

    /// Call after a record was appended: writes out when the buffer is full.
    pub(crate) fn record_done(&mut self) {
        if self.buf.len() >= CHUNK {
            let _ = self.write_out();
        }
    }

    fn write_out(&mut self) -> Result<(), HandlerError> {
        if let Some(kind) = self.failed {
            return Err(to_handler_error(io::Error::from(kind)));
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        let res = {
            let mut w = self.out.borrow_mut();
            w.write_all(&self.buf).and_then(|()| w.flush())
        };
        self.buf.clear();
        res.map_err(|e| {
            self.failed = Some(e.kind());
            to_handler_error(e)
        })
    }

    pub(crate) fn flush(&mut self) -> Result<(), HandlerError> {
        self.write_out()
    }
}

fn to_handler_error(e: io::Error) -> HandlerError {
    if e.kind() == io::ErrorKind::BrokenPipe {
        HandlerError::Closed
    } else {
        HandlerError::Io(e)
    }
}

/// A `Write` whose bytes a test reads after the printer is done.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct Capture(pub(crate) Rc<RefCell<Vec<u8>>>);

#[cfg(test)]
impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
