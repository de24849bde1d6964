//! Network interfaces of the host, as TC programs need them: an interface
//! by name (`--iface`), and the host side of a container's interfaces.
//!
//! A container's interfaces live in its network namespace; what the host
//! can attach to is the other end of each veth pair, in the host's. The
//! kernel knows the pairing: the host-side veth's `IFLA_LINK_NETNSID` is
//! the id the host's namespace gives the container's. So: ask rtnetlink
//! for that id (`RTM_GETNSID` with a descriptor of `/proc/PID/ns/net`),
//! then for every link of the host (`RTM_GETLINK` dump), and keep those
//! whose peer is in it ([`host_peers`]), as upstream's `GetIfacePeers`
//! finds them from the container's side.
//!
//! The message building and parsing ([`nsid_request`], [`link_dump_request`],
//! [`parse_messages`], [`parse_link`]) is pure; the socket I/O is
//! [`host_peers`] and [`ifindex`].

use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

/// One interface of the host.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Iface {
    /// The interface index.
    pub index: u32,
    /// Its name.
    pub name: String,
}

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWNSID: u16 = 88;
const RTM_GETNSID: u16 = 90;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINK_NETNSID: u16 = 37;
const NETNSA_NSID: u16 = 1;
const NETNSA_FD: u16 = 3;
const NLMSG_HDR: usize = 16;
const IFINFOMSG: usize = 16;
const RTGENMSG: usize = 4;

fn align4(n: usize) -> usize {
    n.next_multiple_of(4)
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// A netlink message: header, then `payload`.
fn message(ty: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDR + payload.len();
    let mut m = Vec::with_capacity(align4(len));
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(payload);
    m.resize(align4(len), 0);
    m
}

/// `RTM_GETNSID` for the namespace open as descriptor `ns_fd`.
pub fn nsid_request(seq: u32, ns_fd: u32) -> Vec<u8> {
    let mut p = vec![0u8; RTGENMSG]; // rtgen_family AF_UNSPEC, padded
    p.extend_from_slice(&8u16.to_ne_bytes());
    p.extend_from_slice(&NETNSA_FD.to_ne_bytes());
    p.extend_from_slice(&ns_fd.to_ne_bytes());
    message(RTM_GETNSID, NLM_F_REQUEST, seq, &p)
}

/// `RTM_GETLINK` dump of every link.
pub fn link_dump_request(seq: u32) -> Vec<u8> {
    message(
        RTM_GETLINK,
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        &[0u8; IFINFOMSG],
    )
}

/// One message of a reply.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    /// A message with its type and payload.
    Message(u16, &'a [u8]),
    /// `NLMSG_ERROR` with an errno (0: an acknowledgement).
    Error(i32),
    /// `NLMSG_DONE`: the end of a dump.
    Done,
}

/// The messages of one datagram, as far as they are well formed.
pub fn parse_messages(buf: &[u8]) -> Vec<Reply<'_>> {
    let mut out = Vec::new();
    let mut at = 0;
    while let (Some(len), Some(ty)) = (u32_at(buf, at), u16_at(buf, at + 4)) {
        let len = len as usize;
        if len < NLMSG_HDR || at + len > buf.len() {
            break;
        }
        let payload = &buf[at + NLMSG_HDR..at + len];
        out.push(match ty {
            NLMSG_DONE => Reply::Done,
            NLMSG_ERROR => Reply::Error(u32_at(payload, 0).map_or(0, |e| e as i32)),
            _ => Reply::Message(ty, payload),
        });
        at += align4(len);
    }
    out
}

/// The attributes after `skip` bytes of `payload`: `(type, data)`.
fn attrs(payload: &[u8], skip: usize) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = skip;
    while let (Some(len), Some(ty)) = (u16_at(payload, at), u16_at(payload, at + 2)) {
        let len = usize::from(len);
        if len < 4 || at + len > payload.len() {
            break;
        }
        // The top bits are flags (NLA_F_NESTED, NLA_F_NET_BYTEORDER).
        out.push((ty & 0x3fff, &payload[at + 4..at + len]));
        at += align4(len);
    }
    out
}

/// The nsid an `RTM_NEWNSID` reply gives (`None`: none assigned).
pub fn parse_nsid(payload: &[u8]) -> Option<i32> {
    let id = attrs(payload, RTGENMSG)
        .into_iter()
        .find(|(t, _)| *t == NETNSA_NSID)
        .and_then(|(_, d)| u32_at(d, 0))? as i32;
    (id >= 0).then_some(id)
}

/// A link of an `RTM_NEWLINK`: the interface and the nsid of its peer's
/// namespace, if it has a peer elsewhere.
pub fn parse_link(payload: &[u8]) -> Option<(Iface, Option<i32>)> {
    let index = u32_at(payload, 4)?;
    let mut name = None;
    let mut peer_ns = None;
    for (t, d) in attrs(payload, IFINFOMSG) {
        match t {
            IFLA_IFNAME => {
                let end = d.iter().position(|&b| b == 0).unwrap_or(d.len());
                name = Some(String::from_utf8_lossy(&d[..end]).into_owned());
            }
            IFLA_LINK_NETNSID => peer_ns = u32_at(d, 0).map(|v| v as i32),
            _ => {}
        }
    }
    Some((Iface { index, name: name? }, peer_ns))
}

/// An rtnetlink socket.
fn route_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // A reply that never comes must not hang the run.
    let tv = libc::timeval {
        tv_sec: 2,
        tv_usec: 0,
    };
    // SAFETY: setsockopt with a live timeval of the size passed.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            std::ptr::from_ref(&tv).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        );
    }
    Ok(fd)
}

/// Send `req` and hand every reply message to `f` until the reply ends
/// (`Done`, an error, or a single message when `dump` is false).
fn exchange(fd: &OwnedFd, req: &[u8], dump: bool, mut f: impl FnMut(u16, &[u8])) -> io::Result<()> {
    // SAFETY: send(2) of a live buffer.
    let n = unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 64 << 10];
    loop {
        // SAFETY: recv(2) into a live buffer of its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        for r in parse_messages(&buf[..n as usize]) {
            match r {
                Reply::Done => return Ok(()),
                Reply::Error(0) if !dump => return Ok(()),
                Reply::Error(0) => {}
                Reply::Error(e) => return Err(io::Error::from_raw_os_error(-e)),
                Reply::Message(ty, p) => {
                    f(ty, p);
                    if !dump {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// The host-side interfaces whose peer is in the network namespace of
/// process `pid` (a container's veths, seen from the host).
pub fn host_peers(pid: u32) -> io::Result<Vec<Iface>> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
    let fd = route_socket()?;
    let mut nsid = None;
    exchange(
        &fd,
        &nsid_request(1, ns.as_raw_fd() as u32),
        false,
        |ty, p| {
            if ty == RTM_NEWNSID {
                nsid = parse_nsid(p);
            }
        },
    )?;
    // No id: no link of the host points into that namespace.
    let Some(nsid) = nsid else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    exchange(&fd, &link_dump_request(2), true, |ty, p| {
        if ty == RTM_NEWLINK
            && let Some((iface, Some(peer))) = parse_link(p)
            && peer == nsid
        {
            out.push(iface);
        }
    })?;
    out.sort();
    Ok(out)
}

/// The index of interface `name` in our network namespace.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c =
        std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: if_nametoindex(3) of a NUL-terminated name.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(io::Error::last_os_error()),
        i => Ok(i),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(ty: u16, data: &[u8]) -> Vec<u8> {
        let mut a = ((4 + data.len()) as u16).to_ne_bytes().to_vec();
        a.extend_from_slice(&ty.to_ne_bytes());
        a.extend_from_slice(data);
        a.resize(align4(a.len()), 0);
        a
    }

    fn link(index: u32, name: &str, peer: Option<i32>) -> Vec<u8> {
        let mut p = vec![0u8; IFINFOMSG];
        p[4..8].copy_from_slice(&index.to_ne_bytes());
        let mut n = name.as_bytes().to_vec();
        n.push(0);
        p.extend(attr(IFLA_IFNAME, &n));
        if let Some(peer) = peer {
            p.extend(attr(IFLA_LINK_NETNSID, &peer.to_ne_bytes()));
        }
        message(RTM_NEWLINK, 2, 7, &p)
    }

    #[test]
    fn requests_are_laid_out_as_rtnetlink_expects() {
        let r = nsid_request(5, 9);
        assert_eq!(r.len(), 16 + 4 + 8);
        assert_eq!(u32_at(&r, 0), Some(28));
        assert_eq!(u16_at(&r, 4), Some(RTM_GETNSID));
        assert_eq!(u32_at(&r, 8), Some(5));
        assert_eq!(u16_at(&r, 22), Some(NETNSA_FD));
        assert_eq!(u32_at(&r, 24), Some(9));
        let d = link_dump_request(1);
        assert_eq!(d.len(), 32);
        assert_eq!(u16_at(&d, 6), Some(NLM_F_REQUEST | NLM_F_DUMP));
    }

    #[test]
    fn links_and_their_peers_namespace() {
        let mut buf = link(1, "lo", None);
        buf.extend(link(7, "veth1234", Some(3)));
        buf.extend(message(NLMSG_DONE, 2, 7, &[0; 4]));
        let replies = parse_messages(&buf);
        assert_eq!(replies.len(), 3);
        let links: Vec<_> = replies
            .iter()
            .filter_map(|r| match r {
                Reply::Message(RTM_NEWLINK, p) => parse_link(p),
                _ => None,
            })
            .collect();
        assert_eq!(
            links,
            [
                (
                    Iface {
                        index: 1,
                        name: "lo".into()
                    },
                    None
                ),
                (
                    Iface {
                        index: 7,
                        name: "veth1234".into()
                    },
                    Some(3)
                )
            ]
        );
        assert_eq!(replies[2], Reply::Done);
        let mut nsid = vec![0u8; RTGENMSG];
        nsid.extend(attr(NETNSA_NSID, &3i32.to_ne_bytes()));
        assert_eq!(parse_nsid(&nsid), Some(3));
        let mut none = vec![0u8; RTGENMSG];
        none.extend(attr(NETNSA_NSID, &(-1i32).to_ne_bytes()));
        assert_eq!(parse_nsid(&none), None);
    }

    #[test]
    fn hostile_replies_are_cut_short_not_followed() {
        let buf = link(7, "veth", Some(3));
        for cut in 0..buf.len() {
            for r in parse_messages(&buf[..cut]) {
                if let Reply::Message(_, p) = r {
                    let _ = parse_link(p);
                }
            }
        }
        let mut bad = buf.clone();
        bad[0..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(parse_messages(&bad).is_empty());
        let mut err = message(NLMSG_ERROR, 0, 1, &(-19i32).to_ne_bytes());
        err.extend(message(NLMSG_ERROR, 0, 1, &[]));
        assert_eq!(parse_messages(&err)[0], Reply::Error(-19));
    }
}
