//! `cidr("10.0.0.0/8", ...)` and `ADDR in cidr(...)`, with the rules of
//! upstream's functions (Go's `net.ParseCIDR`, `net.ParseIP` and
//! `IPNet.Contains`): an IPv4 address matches an IPv4 network, an IPv6
//! address an IPv6 one; an IPv4-mapped IPv6 address (`::ffff:10.1.2.3`)
//! counts as IPv4, and so does a network whose masked address is one.
//! Parsed once when the expression is compiled; a match parses the
//! event's text without allocating.

use std::net::IpAddr;

/// One network: its masked address and mask, 4 or 16 bytes used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Net {
    addr: [u8; 16],
    mask: [u8; 16],
    /// 4 for IPv4, 16 for IPv6.
    len: usize,
}

/// An address as `IPNet.Contains` sees it: 4 bytes if it is IPv4 or
/// IPv4-mapped, else 16.
fn bytes_of(ip: IpAddr) -> ([u8; 16], usize) {
    let v6 = match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    match v6.to_ipv4_mapped() {
        Some(v4) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v4.octets());
            (b, 4)
        }
        None => (v6.octets(), 16),
    }
}

/// Parse `ADDR/PREFIX` as Go's `net.ParseCIDR` does (no zone; the prefix
/// in decimal, leading zeros allowed, at most 32 for IPv4 and 128 for
/// IPv6).
pub(super) fn parse_net(s: &str) -> Result<Net, String> {
    let bad = || format!("{s:?} is not a CIDR network (ADDRESS/PREFIX, as 10.0.0.0/8 or fd00::/8)");
    let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
    let ip: IpAddr = addr.parse().map_err(|_| bad())?;
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let bits: usize = prefix.parse().map_err(|_| bad())?;
    let width = if ip.is_ipv4() { 32 } else { 128 };
    if bits > width {
        return Err(bad());
    }
    // The mask over the address's own width, then both as 16 bytes.
    let mut mask = [0u8; 16];
    let offset = if ip.is_ipv4() { 12 } else { 0 };
    if ip.is_ipv4() {
        mask[..12].fill(0xff);
    }
    for i in 0..bits {
        mask[offset + i / 8] |= 0x80 >> (i % 8);
    }
    let full = match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    };
    let mut masked = [0u8; 16];
    for i in 0..16 {
        masked[i] = full[i] & mask[i];
    }
    let masked = std::net::Ipv6Addr::from(masked);
    Ok(match masked.to_ipv4_mapped() {
        // IPv4, or an IPv6 network whose masked address is IPv4-mapped:
        // Go compares it as IPv4 with the last four bytes of the mask.
        Some(v4) => {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&v4.octets());
            let mut m = [0u8; 16];
            m[..4].copy_from_slice(&mask[12..]);
            Net {
                addr: a,
                mask: m,
                len: 4,
            }
        }
        None => Net {
            addr: masked.octets(),
            mask,
            len: 16,
        },
    })
}

/// Does `text` (an address as events carry it) fall in one of `nets`?
/// `None` when it is not an IP address: upstream's evaluation fails then.
pub(super) fn contains(nets: &[Net], text: &[u8]) -> Option<bool> {
    let text = std::str::from_utf8(text).ok()?;
    let ip: IpAddr = text.parse().ok()?;
    let (b, len) = bytes_of(ip);
    Some(
        nets.iter()
            .any(|n| n.len == len && (0..len).all(|i| b[i] & n.mask[i] == n.addr[i] & n.mask[i])),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(nets: &[&str], ip: &str) -> Option<bool> {
        let nets: Vec<Net> = nets.iter().map(|n| parse_net(n).unwrap()).collect();
        contains(&nets, ip.as_bytes())
    }

    #[test]
    fn networks_match_as_go_does() {
        // Upstream's own cases (pkg/datasource/expr tests).
        assert_eq!(m(&["1.0.0.0/8"], "1.1.1.1"), Some(true));
        assert_eq!(m(&["1.0.0.0/8"], "127.0.0.1"), Some(false));
        let three = ["10.0.0.0/8", "20.0.0.0/8", "30.0.0.0/8"];
        assert_eq!(m(&three, "20.21.22.23"), Some(true));
        assert_eq!(m(&three, "25.26.27.28"), Some(false));
        // The address part need not be the network's first address.
        assert_eq!(m(&["10.1.2.3/8"], "10.200.0.1"), Some(true));
        assert_eq!(m(&["0.0.0.0/0"], "8.8.8.8"), Some(true));
        assert_eq!(m(&["0.0.0.0/0"], "::1"), Some(false));
        assert_eq!(m(&["8.8.8.8/32"], "8.8.8.8"), Some(true));
        assert_eq!(m(&["8.8.8.8/32"], "8.8.8.9"), Some(false));
        assert_eq!(m(&["fd00::/8"], "fd12::1"), Some(true));
        assert_eq!(m(&["fd00::/8"], "fe80::1"), Some(false));
        assert_eq!(m(&["::/0"], "10.0.0.1"), Some(false));
        // IPv4-mapped addresses and networks count as IPv4.
        assert_eq!(m(&["10.0.0.0/8"], "::ffff:10.1.2.3"), Some(true));
        assert_eq!(m(&["::ffff:10.0.0.0/104"], "10.9.9.9"), Some(true));
        assert_eq!(m(&["::ffff:10.0.0.0/104"], "11.9.9.9"), Some(false));
        // Not an address: upstream's evaluation fails.
        assert_eq!(m(&["10.0.0.0/8"], ""), None);
        assert_eq!(m(&["10.0.0.0/8"], "10.0.0.1:80"), None);
        assert_eq!(m(&["10.0.0.0/8"], "fe80::1%eth0"), None);
        assert_eq!(m(&["10.0.0.0/8"], "010.0.0.1"), None);
        assert_eq!(m(&[], "10.0.0.1"), Some(false));
    }

    #[test]
    fn bad_networks_are_refused() {
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/-1",
            "10.0.0.0/",
            "/8",
            "x/8",
            "10.0.0/8",
            "fe80::1%eth0/64",
            "10.0.0.0/8/8",
            "10.0.0.0/ 8",
            "10.0.0.0/99999999999999999999999",
        ] {
            assert!(parse_net(bad).is_err(), "{bad}");
        }
        // Go reads the prefix with leading zeros.
        assert!(parse_net("10.0.0.0/08").is_ok());
        assert!(parse_net("10.0.0.0/0008").is_ok());
    }
}
