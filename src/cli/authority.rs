//! Any `:authority` on the daemon's unix socket.
//!
//! gRPC clients do not agree on the `:authority` of a unix socket: grpc-go
//! and tonic send `localhost`, grpc-core (Python, C++, Ruby) since 1.57
//! sends the socket's path percent-encoded (`tmp%2Fig.sock`), grpc-java
//! the path itself. The HTTP/2 server under tonic (h2) parses the header
//! as a URI authority and resets a stream whose authority does not parse,
//! before the daemon sees the request; it has no option to accept it. On a
//! unix socket the authority means nothing (the daemon never reads it),
//! so [`AnyAuthority`] rewrites every `:authority` value the client sends
//! into one that parses, as the bytes arrive.
//!
//! The rewrite is in place and keeps every length: the value's bytes
//! become `x`s (its Huffman flag cleared), so frames and their lengths are
//! untouched. The server's HPACK table then holds a value no longer than
//! the client's, so it evicts no earlier than the client does and the
//! indices the client sends still name the same entries. Frames this does
//! not understand are passed on unchanged, for h2 to judge.
//!
//! Owns the client-to-server byte stream of one unix connection; not TCP
//! (where TLS and real host names apply) and not the server's direction.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The connection preface a client sends first (RFC 9113 §3.4).
const PREFACE_LEN: usize = 24;
/// HTTP/2 frame types and flags this reads.
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// `:authority` is entry 1 of HPACK's static table (RFC 7541 appendix A).
const AUTHORITY_INDEX: u64 = 1;
const AUTHORITY: &[u8] = b":authority";

/// Where the frame parser is.
#[derive(Clone, Copy, Debug)]
enum Frame {
    /// Bytes of the preface still to come.
    Preface(usize),
    /// A frame header, `n` of its 9 bytes read.
    Head([u8; 9], usize),
    /// Payload bytes passed on untouched.
    Skip(usize),
    /// A padded HEADERS frame's pad length byte; `len` counts it.
    PadLen { len: usize, priority: bool },
    /// A header block fragment: `skip` bytes before it (priority), `block`
    /// bytes of HPACK, `pad` bytes after.
    Block {
        skip: usize,
        block: usize,
        pad: usize,
    },
    /// Something malformed: everything passes on unchanged from here.
    Off,
}

/// What an HPACK integer being read is for.
#[derive(Clone, Copy, Debug)]
enum IntOf {
    /// An index or table size: the representation ends with it.
    Last,
    /// A literal's name index (0: a literal name follows).
    NameIndex,
    /// A string's length: a name's (Huffman-coded or not) or a value's
    /// (`authority`: the value of `:authority`).
    Len {
        name: bool,
        huffman: bool,
        authority: bool,
    },
}

/// Where the HPACK parser is, within one header block.
#[derive(Clone, Copy, Debug)]
enum Hpack {
    /// At a representation's first byte.
    Rep,
    /// Continuation bytes of an integer.
    Int { of: IntOf, value: u64, shift: u32 },
    /// At a string's first byte (its Huffman flag and length prefix).
    Str { name: bool, authority: bool },
    /// A name's bytes; `matched`: how much of `:authority` they are so far
    /// (`None` once they differ, or Huffman-coded).
    Name { left: u64, matched: Option<usize> },
    /// A value's bytes; `authority`: overwrite them.
    Value { left: u64, authority: bool },
}

/// Rewrites `:authority` values in the byte stream a client sends.
#[derive(Debug)]
pub struct Rewriter {
    frame: Frame,
    hpack: Hpack,
}

impl Default for Rewriter {
    fn default() -> Self {
        Self {
            frame: Frame::Preface(PREFACE_LEN),
            hpack: Hpack::Rep,
        }
    }
}

impl Rewriter {
    /// The next bytes of the stream, rewritten in place.
    pub fn process(&mut self, mut buf: &mut [u8]) {
        while !buf.is_empty() {
            let used = match self.frame {
                Frame::Off => return,
                Frame::Preface(left) => {
                    let n = left.min(buf.len());
                    self.frame = match left - n {
                        0 => Frame::Head([0; 9], 0),
                        l => Frame::Preface(l),
                    };
                    n
                }
                Frame::Head(mut head, n) => {
                    head[n] = buf[0];
                    self.frame = if n == 8 {
                        self.frame_starts(&head)
                    } else {
                        Frame::Head(head, n + 1)
                    };
                    1
                }
                Frame::Skip(left) => {
                    let n = left.min(buf.len());
                    self.frame = after(left - n, Frame::Skip);
                    n
                }
                Frame::PadLen { len, priority } => {
                    let pad = buf[0] as usize;
                    let skip = if priority { 5 } else { 0 };
                    self.frame = match (len - 1).checked_sub(skip + pad) {
                        Some(block) => Frame::Block { skip, block, pad },
                        None => Frame::Off,
                    };
                    1
                }
                Frame::Block { skip, block, pad } if skip > 0 => {
                    let n = skip.min(buf.len());
                    self.frame = Frame::Block {
                        skip: skip - n,
                        block,
                        pad,
                    };
                    n
                }
                Frame::Block { block, pad, .. } if block > 0 => {
                    let n = block.min(buf.len());
                    for b in &mut buf[..n] {
                        if !self.hpack_byte(b) {
                            self.frame = Frame::Off;
                            return;
                        }
                    }
                    self.frame = Frame::Block {
                        skip: 0,
                        block: block - n,
                        pad,
                    };
                    n
                }
                Frame::Block { pad, .. } => {
                    self.frame = after(pad, Frame::Skip);
                    0
                }
            };
            buf = &mut buf[used..];
        }
    }

    fn frame_starts(&mut self, head: &[u8; 9]) -> Frame {
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        match kind {
            HEADERS => {
                // A new header block: no representation is half read.
                self.hpack = Hpack::Rep;
                let priority = flags & PRIORITY != 0;
                if flags & PADDED != 0 {
                    if len == 0 {
                        return Frame::Off;
                    }
                    Frame::PadLen { len, priority }
                } else {
                    let skip = if priority { 5 } else { 0 };
                    match len.checked_sub(skip) {
                        Some(block) => Frame::Block {
                            skip,
                            block,
                            pad: 0,
                        },
                        None => Frame::Off,
                    }
                }
            }
            CONTINUATION => Frame::Block {
                skip: 0,
                block: len,
                pad: 0,
            },
            _ => after(len, Frame::Skip),
        }
    }

    /// One byte of a header block; false when it cannot be HPACK.
    fn hpack_byte(&mut self, b: &mut u8) -> bool {
        let byte = *b;
        self.hpack = match self.hpack {
            Hpack::Rep => {
                if byte & 0x80 != 0 {
                    int_start(byte, 7, IntOf::Last)
                } else if byte & 0xc0 == 0x40 {
                    int_start(byte, 6, IntOf::NameIndex)
                } else if byte & 0xe0 == 0x20 {
                    int_start(byte, 5, IntOf::Last)
                } else {
                    int_start(byte, 4, IntOf::NameIndex)
                }
            }
            Hpack::Int { of, value, shift } => {
                if shift > 56 {
                    return false;
                }
                let value = value + (u64::from(byte & 0x7f) << shift);
                if byte & 0x80 != 0 {
                    Hpack::Int {
                        of,
                        value,
                        shift: shift + 7,
                    }
                } else {
                    int_done(of, value)
                }
            }
            Hpack::Str { name, authority } => {
                if authority {
                    // The value becomes plain `x`s of the same length.
                    *b = byte & 0x7f;
                }
                let huffman = byte & 0x80 != 0;
                int_start(
                    byte,
                    7,
                    IntOf::Len {
                        name,
                        huffman,
                        authority,
                    },
                )
            }
            Hpack::Name { left, matched } => {
                let matched = matched
                    .filter(|&m| AUTHORITY.get(m) == Some(&byte))
                    .map(|m| m + 1);
                if left == 1 {
                    Hpack::Str {
                        name: false,
                        authority: matched == Some(AUTHORITY.len()),
                    }
                } else {
                    Hpack::Name {
                        left: left - 1,
                        matched,
                    }
                }
            }
            Hpack::Value { left, authority } => {
                if authority {
                    *b = b'x';
                }
                if left == 1 {
                    Hpack::Rep
                } else {
                    Hpack::Value {
                        left: left - 1,
                        authority,
                    }
                }
            }
        };
        true
    }
}

fn after(left: usize, more: fn(usize) -> Frame) -> Frame {
    if left == 0 {
        Frame::Head([0; 9], 0)
    } else {
        more(left)
    }
}

/// An integer's first byte, with an `n`-bit prefix.
fn int_start(byte: u8, n: u32, of: IntOf) -> Hpack {
    let mask = (1u8 << n) - 1;
    let value = u64::from(byte & mask);
    if value == u64::from(mask) {
        Hpack::Int {
            of,
            value,
            shift: 0,
        }
    } else {
        int_done(of, value)
    }
}

fn int_done(of: IntOf, value: u64) -> Hpack {
    match of {
        IntOf::Last => Hpack::Rep,
        IntOf::NameIndex if value == 0 => Hpack::Str {
            name: true,
            authority: false,
        },
        IntOf::NameIndex => Hpack::Str {
            name: false,
            authority: value == AUTHORITY_INDEX,
        },
        // A Huffman-coded name is not compared: encoders name
        // `:authority` by its static index. An empty name is not it.
        IntOf::Len {
            name: true,
            huffman,
            ..
        } => match value {
            0 => Hpack::Str {
                name: false,
                authority: false,
            },
            left => Hpack::Name {
                left,
                matched: (!huffman).then_some(0),
            },
        },
        IntOf::Len { authority, .. } => match value {
            0 => Hpack::Rep,
            left => Hpack::Value { left, authority },
        },
    }
}

/// A unix connection whose client's `:authority` values are rewritten
/// ([`Rewriter`]); writes pass through.
pub struct AnyAuthority<S> {
    inner: S,
    rewriter: Rewriter,
}

impl<S> AnyAuthority<S> {
    /// Wraps a freshly accepted connection; `rewrite` false passes every
    /// byte on (TLS on a unix socket: what is read are TLS records, whose
    /// HTTP/2 frames h2 sees only after rustls).
    pub fn new(inner: S, rewrite: bool) -> Self {
        let mut rewriter = Rewriter::default();
        if !rewrite {
            rewriter.frame = Frame::Off;
        }
        Self { inner, rewriter }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AnyAuthority<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let start = buf.filled().len();
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            this.rewriter.process(&mut buf.filled_mut()[start..]);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AnyAuthority<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for AnyAuthority<tokio::net::UnixStream> {
    type ConnectInfo = <tokio::net::UnixStream as tonic::transport::server::Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            flags,
            0,
            0,
            0,
            1,
        ];
        f.extend_from_slice(payload);
        f
    }

    /// The stream rewritten as if read `chunk` bytes at a time.
    fn rewrite_in_chunks(stream: &[u8], chunk: usize) -> Vec<u8> {
        let mut out = stream.to_vec();
        let mut r = Rewriter::default();
        for c in out.chunks_mut(chunk) {
            r.process(c);
        }
        out
    }

    #[test]
    fn the_authority_of_every_representation_becomes_xs_of_its_length() {
        // A SETTINGS frame, then HEADERS (padded, with priority) holding:
        // :method POST (indexed 3), :authority with incremental indexing
        // (static name 1) as a raw `tmp%2Fa.sock`, a literal without
        // indexing named by a literal `:authority` string, a Huffman value
        // (H bit set) under name index 1 never indexed, and a header of
        // another name whose value must stay.
        let mut block = vec![0x83];
        block.push(0x41);
        block.push(12);
        block.extend_from_slice(b"tmp%2Fa.sock");
        block.push(0x00);
        block.push(AUTHORITY.len() as u8);
        block.extend_from_slice(AUTHORITY);
        block.push(3);
        block.extend_from_slice(b"a/b");
        block.push(0x11);
        block.push(0x80 | 4);
        block.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        block.push(0x40);
        block.push(2);
        block.extend_from_slice(b"te");
        block.push(8);
        block.extend_from_slice(b"trailers");
        let mut payload = vec![3u8];
        payload.extend_from_slice(&[0, 0, 0, 0, 16]);
        payload.extend_from_slice(&block);
        payload.extend_from_slice(&[0, 0, 0]);
        let mut stream = PREFACE.to_vec();
        stream.extend(frame(0x4, 0, &[0, 3, 0, 0, 0, 100]));
        stream.extend(frame(HEADERS, PADDED | PRIORITY | 0x4, &payload));
        stream.extend(frame(0x0, 0x1, b"\0\0\0\0\x05hello"));
        let find = |hay: &[u8], needle: &[u8], from: usize| {
            from + hay[from..]
                .windows(needle.len())
                .position(|w| w == needle)
                .unwrap()
        };
        let mut want_block = block.clone();
        let p = find(&block, b"tmp%2Fa.sock", 0);
        want_block[p..p + 12].fill(b'x');
        let p = find(&block, b"a/b", p);
        want_block[p..p + 3].fill(b'x');
        let p = find(&block, &[0x80 | 4, 0xde], p);
        want_block[p] = 4;
        want_block[p + 1..p + 5].fill(b'x');
        let mut want = stream.clone();
        let at = find(&stream, &block, 0);
        want[at..at + block.len()].copy_from_slice(&want_block);
        for chunk in [1, 2, 7, 4096] {
            let got = rewrite_in_chunks(&stream, chunk);
            assert_eq!(got.len(), stream.len());
            assert_eq!(got, want, "chunks of {chunk}");
        }
    }

    #[test]
    fn a_block_split_over_continuation_and_other_frames_pass_unchanged() {
        let mut block = vec![0x41, 12];
        block.extend_from_slice(b"tmp%2Fa.sock");
        let mut stream = PREFACE.to_vec();
        // DATA that looks like a header block must not be touched.
        stream.extend(frame(0x0, 0, &block));
        stream.extend(frame(HEADERS, 0, &block[..5]));
        stream.extend(frame(CONTINUATION, 0x4, &block[5..]));
        let got = rewrite_in_chunks(&stream, 3);
        let data_end = PREFACE.len() + 9 + block.len();
        assert_eq!(got[..data_end], stream[..data_end]);
        let tail = String::from_utf8_lossy(&got[data_end..]).into_owned();
        assert!(
            tail.contains("xxx") && tail.contains("xxxxxxxxx"),
            "{tail:?}"
        );
        assert!(!tail.contains("sock"), "{tail:?}");
    }

    #[test]
    fn malformed_frames_stop_the_rewrite_without_panicking() {
        let mut stream = PREFACE.to_vec();
        // Padding longer than the frame.
        stream.extend(frame(HEADERS, PADDED, &[200, 0x41, 1, b'a']));
        stream.extend(frame(HEADERS, 0, &[0x41, 1, b'a']));
        let got = rewrite_in_chunks(&stream, 5);
        assert_eq!(got, stream);
        // An integer that never ends.
        let mut stream = PREFACE.to_vec();
        stream.extend(frame(HEADERS, 0, &[0x7f; 40]));
        let _ = rewrite_in_chunks(&stream, 1);
    }
}
