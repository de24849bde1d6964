//! The renderings of the formatters, each appending to a reused `String`
//! (no allocation once the buffer has grown, no system call).

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::datasource::copy;
use crate::names::{ERRNO, SIGNALS, SYSCALLS_X86_64};
use crate::operators::calendar::civil_from_days;

/// The rendered `YYYY-MM-DDTHH:MM:SS.` of the last second seen: events
/// come in bursts within one second, so the calendar arithmetic runs about
/// once a second, not once per event.
#[derive(Debug, Default)]
pub struct SecondCache {
    secs: Option<i64>,
    /// `YYYY-MM-DDTHH:MM:SS.` of second `secs`.
    prefix: [u8; 20],
}

/// Wall-clock time of a boot-time timestamp, as RFC 3339 in UTC with
/// nanoseconds: `2024-05-01T12:34:56.123456789Z`. `offset_ns` is
/// `CLOCK_REALTIME - CLOCK_BOOTTIME`. Zero (no timestamp) stays empty.
pub fn timestamp(out: &mut String, boot_ns: u64, offset_ns: i128, cache: &mut SecondCache) {
    if boot_ns == 0 {
        return;
    }
    let wall = i128::from(boot_ns) + offset_ns;
    // Years 1970 to 2262 (i64 nanoseconds, four-digit years): the fast path.
    let Some(wall) = i64::try_from(wall).ok().filter(|w| *w >= 0) else {
        return timestamp_slow(out, wall);
    };
    let secs = wall / 1_000_000_000;
    let nanos = wall % 1_000_000_000;
    if cache.secs != Some(secs) {
        let (y, m, d) = civil_from_days(i128::from(secs / 86_400));
        let sod = secs % 86_400;
        let p = &mut cache.prefix;
        put_digits(&mut p[0..4], y as u64);
        p[4] = b'-';
        put_digits(&mut p[5..7], m as u64);
        p[7] = b'-';
        put_digits(&mut p[8..10], d as u64);
        p[10] = b'T';
        put_digits(&mut p[11..13], (sod / 3600) as u64);
        p[13] = b':';
        put_digits(&mut p[14..16], (sod / 60 % 60) as u64);
        p[16] = b':';
        put_digits(&mut p[17..19], (sod % 60) as u64);
        p[19] = b'.';
        cache.secs = Some(secs);
    }
    // The prefix and nine digits of nanoseconds, in one copy: no UTF-8
    // check (it cost ~90 instructions per event), no digit loop.
    let mut text = [0u8; 30];
    text[..20].copy_from_slice(&cache.prefix);
    nine_digits(&mut text[20..29], nanos as u32);
    text[29] = b'Z';
    // SAFETY: digits and separators only, all ASCII: valid UTF-8.
    copy::extend(unsafe { out.as_mut_vec() }, &text);
}

/// Write `v` (below 10^9) as nine decimal digits, zero-padded, two at a
/// time.
fn nine_digits(buf: &mut [u8], v: u32) {
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";
    let pair = |k: u32| {
        let k = (k % 100) as usize * 2;
        [PAIRS[k], PAIRS[k + 1]]
    };
    let (head, low) = (v / 100_000_000 % 10, v % 100_000_000);
    let (hi, lo) = (low / 10_000, low % 10_000);
    let out: [u8; 9] = [
        b'0' + head as u8,
        pair(hi / 100)[0],
        pair(hi / 100)[1],
        pair(hi)[0],
        pair(hi)[1],
        pair(lo / 100)[0],
        pair(lo / 100)[1],
        pair(lo)[0],
        pair(lo)[1],
    ];
    buf.copy_from_slice(&out);
}

/// Write `v` as decimal into all of `buf`, zero-padded on the left.
fn put_digits(buf: &mut [u8], mut v: u64) {
    for b in buf.iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Any other time, through the formatting machinery.
fn timestamp_slow(out: &mut String, wall: i128) {
    let secs = wall.div_euclid(1_000_000_000);
    let nanos = wall.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
}

/// A byte count as upstream shows it (go-humanize's `Bytes`: powers of
/// 1000, one decimal below 10): `512 B`, `1.0 MB`, `256 MB`.
pub fn bytes(out: &mut String, n: u64) {
    const SIZES: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 10 {
        let _ = write!(out, "{n} B");
        return;
    }
    let s = n as f64;
    let e = (s.ln() / 1000f64.ln()).floor();
    let suffix = SIZES[(e as usize).min(SIZES.len() - 1)];
    let val = (s / 1000f64.powf(e) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        let _ = write!(out, "{val:.1} {suffix}");
    } else {
        let _ = write!(out, "{val:.0} {suffix}");
    }
}

/// A duration in nanoseconds as upstream shows it: `10ns`, `10.00µs`,
/// `150.00ms` below a second, Go's notation (`3.25s`, `5m0s`) above.
pub fn duration(out: &mut String, ns: u64) {
    if ns < 1_000 {
        let _ = write!(out, "{ns}ns");
    } else if ns < 1_000_000 {
        let _ = write!(out, "{:.2}µs", ns as f64 / 1e3);
    } else if ns < 1_000_000_000 {
        let _ = write!(out, "{:.2}ms", ns as f64 / 1e6);
    } else {
        crate::metadata::config::write_go_duration(out, u128::from(ns));
    }
}

/// `ENOENT`; 0 (success) stays empty; an unknown number is `error#N`.
pub fn errno(out: &mut String, n: u64) {
    if n == 0 {
        return;
    }
    match usize::try_from(n).ok().and_then(|i| ERRNO.get(i)) {
        Some(name) if !name.is_empty() => out.push_str(name),
        _ => {
            let _ = write!(out, "error#{n}");
        }
    }
}

/// `SIGKILL`; an unknown number (0, real-time signals) is `signal#N`.
pub fn signal(out: &mut String, n: u64) {
    match usize::try_from(n).ok().and_then(|i| SIGNALS.get(i)) {
        Some(name) if !name.is_empty() => out.push_str(name),
        _ => {
            let _ = write!(out, "signal#{n}");
        }
    }
}

/// `SYS_OPENAT`, upstream's spelling; `SYS_UNKNOWN` for a number without
/// a name. The table is x86_64's; other architectures print `syscall#N`.
pub fn syscall(out: &mut String, n: u64) {
    if !cfg!(target_arch = "x86_64") {
        let _ = write!(out, "syscall#{n}");
        return;
    }
    out.push_str("SYS_");
    match usize::try_from(n).ok().and_then(|i| SYSCALLS_X86_64.get(i)) {
        Some(name) if !name.is_empty() => {
            out.extend(name.chars().map(|c| c.to_ascii_uppercase()));
        }
        _ => out.push_str("UNKNOWN"),
    }
}

/// Bits of `open(2)` flags and their names, in upstream's order. A name
/// covering several bits (`O_SYNC` is `__O_SYNC|O_DSYNC`) comes before its
/// parts and consumes them.
#[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
const OPEN_FLAGS: &[(u32, &str)] = &[
    (0o100, "O_CREAT"),
    (0o200, "O_EXCL"),
    (0o400, "O_NOCTTY"),
    (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"),
    (0o4000, "O_NONBLOCK"),
    (0o4010000, "O_SYNC"),
    (0o10000, "O_DSYNC"),
    (0o20000, "O_FASYNC"),
    (0o200000, "O_DIRECT"),
    (0o400000, "O_LARGEFILE"),
    (0o20040000, "O_TMPFILE"),
    (0o40000, "O_DIRECTORY"),
    (0o100000, "O_NOFOLLOW"),
    (0o1000000, "O_NOATIME"),
    (0o2000000, "O_CLOEXEC"),
    (0o10000000, "O_PATH"),
];
/// Bits of `open(2)` flags (x86_64 and the generic values).
#[cfg(not(any(target_arch = "aarch64", target_arch = "arm")))]
const OPEN_FLAGS: &[(u32, &str)] = &[
    (0o100, "O_CREAT"),
    (0o200, "O_EXCL"),
    (0o400, "O_NOCTTY"),
    (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"),
    (0o4000, "O_NONBLOCK"),
    (0o4010000, "O_SYNC"),
    (0o10000, "O_DSYNC"),
    (0o20000, "O_FASYNC"),
    (0o40000, "O_DIRECT"),
    (0o100000, "O_LARGEFILE"),
    (0o20200000, "O_TMPFILE"),
    (0o200000, "O_DIRECTORY"),
    (0o400000, "O_NOFOLLOW"),
    (0o1000000, "O_NOATIME"),
    (0o2000000, "O_CLOEXEC"),
    (0o10000000, "O_PATH"),
];

/// `O_RDONLY|O_CLOEXEC`: the access mode, then each flag; bits without a
/// name are appended in hex (`0x40000000`).
pub fn file_flags(out: &mut String, flags: u32) {
    out.push_str(match flags & 0o3 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_ACCMODE",
    });
    let mut rest = flags & !0o3;
    for &(mask, name) in OPEN_FLAGS {
        if rest & mask == mask {
            out.push('|');
            out.push_str(name);
            rest &= !mask;
        }
    }
    if rest != 0 {
        let _ = write!(out, "|{rest:#x}");
    }
}

/// `-rw-r--r--`, as `ls -l` shows a mode: the file type (`-` when the mode
/// has no type bits, as for the mode argument of `open(2)`), then the
/// permissions with setuid, setgid and sticky as `s`/`S` and `t`/`T`.
pub fn file_mode(out: &mut String, mode: u32) {
    out.push(match mode & 0o170000 {
        0o140000 => 's',
        0o120000 => 'l',
        0o060000 => 'b',
        0o040000 => 'd',
        0o020000 => 'c',
        0o010000 => 'p',
        _ => '-',
    });
    let bit = |b: u32, c: char| if mode & b != 0 { c } else { '-' };
    let exec = |x: u32, special: u32, set: char| match (mode & x != 0, mode & special != 0) {
        (true, true) => set,
        (false, true) => set.to_ascii_uppercase(),
        (true, false) => 'x',
        (false, false) => '-',
    };
    out.push(bit(0o400, 'r'));
    out.push(bit(0o200, 'w'));
    out.push(exec(0o100, 0o4000, 's'));
    out.push(bit(0o040, 'r'));
    out.push(bit(0o020, 'w'));
    out.push(exec(0o010, 0o2000, 's'));
    out.push(bit(0o004, 'r'));
    out.push(bit(0o002, 'w'));
    out.push(exec(0o001, 0o1000, 't'));
}

/// An IP address from the 16 bytes of `gadget_ip_addr_t` (network order)
/// and its version; anything but 4 or 6 (an unset endpoint) stays empty.
pub fn ip(out: &mut String, raw: &[u8; 16], version: u64) {
    match version {
        4 => {
            let _ = write!(out, "{}", Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]));
        }
        6 => {
            let _ = write!(out, "{}", Ipv6Addr::from(*raw));
        }
        _ => {}
    }
}

/// `10.0.0.1:443`, `[::1]:443`; empty for an unset endpoint.
pub fn endpoint(out: &mut String, raw: &[u8; 16], version: u64, port: u64) {
    match version {
        4 => {
            ip(out, raw, version);
            let _ = write!(out, ":{port}");
        }
        6 => {
            out.push('[');
            ip(out, raw, version);
            let _ = write!(out, "]:{port}");
        }
        _ => {}
    }
}

/// IP protocol numbers that endpoints carry, by upstream's names.
const PROTOCOLS: &[(u64, &str)] = &[
    (0, "IP"),
    (1, "ICMP"),
    (2, "IGMP"),
    (6, "TCP"),
    (17, "UDP"),
    (33, "DCCP"),
    (41, "IPV6"),
    (47, "GRE"),
    (50, "ESP"),
    (51, "AH"),
    (58, "ICMPV6"),
    (132, "SCTP"),
    (136, "UDPLITE"),
    (255, "RAW"),
    (262, "MPTCP"),
];

/// `TCP`; an unknown number is `proto#N`.
pub fn protocol(out: &mut String, n: u64) {
    match PROTOCOLS.iter().find(|(p, _)| *p == n) {
        Some((_, name)) => out.push_str(name),
        None => {
            let _ = write!(out, "proto#{n}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mut f: impl FnMut(&mut String)) -> String {
        let mut s = String::new();
        f(&mut s);
        s
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_nanoseconds() {
        let cases: &[(u64, i128, &str)] = &[
            (0, 5, ""),
            (2, 0, "1970-01-01T00:00:00.000000002Z"),
            (1, 0, "1970-01-01T00:00:00.000000001Z"),
            // 2000-02-29 (a leap day in a year divisible by 400).
            (
                1,
                951_782_400_000_000_000 - 1,
                "2000-02-29T00:00:00.000000000Z",
            ),
            (
                123_456_789,
                1_714_566_896_000_000_000,
                "2024-05-01T12:34:56.123456789Z",
            ),
            (500, -1_000, "1969-12-31T23:59:59.999999500Z"),
            (u64::MAX, 0, "2554-07-21T23:34:33.709551615Z"),
        ];
        // One cache across all cases, as in a run; and a fresh one each.
        let mut shared = SecondCache::default();
        for &(boot, off, want) in cases {
            assert_eq!(
                run(|s| timestamp(s, boot, off, &mut shared)),
                want,
                "{boot} {off}"
            );
            let mut fresh = SecondCache::default();
            assert_eq!(
                run(|s| timestamp(s, boot, off, &mut fresh)),
                want,
                "{boot} {off}"
            );
        }
    }

    /// The fast path writes the nanoseconds two digits at a time: every
    /// digit position and carry prints as the formatting machinery does.
    #[test]
    fn nanoseconds_of_every_length_match_the_formatting_machinery() {
        let mut cache = SecondCache::default();
        let base: i128 = 1_714_566_896_000_000_000;
        let mut p = 1u64;
        let mut nanos = vec![0u64, 999_999_999, 123_456_789, 100_000_000];
        while p < 1_000_000_000 {
            nanos.extend(
                [p - 1, p, p + 1, p * 7 + 3]
                    .iter()
                    .filter(|n| **n < 1_000_000_000),
            );
            p *= 10;
        }
        for n in nanos {
            // A boot time of 0 means none: start a second later.
            let boot = 1_000_000_000 + n;
            let fast = run(|s| timestamp(s, boot, base, &mut cache));
            let slow = run(|s| timestamp_slow(s, base + i128::from(boot)));
            assert_eq!(fast, slow, "{n}");
        }
    }

    #[test]
    fn bytes_and_durations_like_upstream() {
        let b = |n| run(|o| bytes(o, n));
        assert_eq!(b(0), "0 B");
        assert_eq!(b(512), "512 B");
        assert_eq!(b(1_000_000), "1.0 MB");
        assert_eq!(b(256_000_000), "256 MB");
        assert_eq!(b(1_000_000_000), "1.0 GB");
        assert_eq!(b(5_000_000_000_000), "5.0 TB");
        assert_eq!(b(4_198_400), "4.2 MB");
        let d = |n| run(|o| duration(o, n));
        assert_eq!(d(0), "0ns");
        assert_eq!(d(10), "10ns");
        assert_eq!(d(10_000), "10.00µs");
        assert_eq!(d(150_000_000), "150.00ms");
        assert_eq!(d(3_250_000_000), "3.25s");
        assert_eq!(d(300_000_000_000), "5m0s");
        assert_eq!(d(9_000_000_000_000), "2h30m0s");
    }

    #[test]
    fn names_of_numbers() {
        type Render = fn(&mut String, u64);
        let cases: &[(Render, u64, &str)] = &[
            (errno, 0, ""),
            (errno, 2, "ENOENT"),
            (errno, 11, "EAGAIN"),
            (errno, 13, "EACCES"),
            (errno, 41, "error#41"),
            (errno, 133, "EHWPOISON"),
            (errno, 999, "error#999"),
            (errno, u64::MAX, "error#18446744073709551615"),
            (signal, 9, "SIGKILL"),
            (signal, 16, "SIGSTKFLT"),
            (signal, 31, "SIGSYS"),
            (signal, 0, "signal#0"),
            (signal, 34, "signal#34"),
            (protocol, 6, "TCP"),
            (protocol, 17, "UDP"),
            (protocol, 99, "proto#99"),
        ];
        for &(f, n, want) in cases {
            assert_eq!(run(|s| f(s, n)), want, "{n}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn syscall_names_match_the_c_library() {
        let cases: &[(i64, &str)] = &[
            (libc::SYS_read, "SYS_READ"),
            (libc::SYS_openat, "SYS_OPENAT"),
            (libc::SYS_execve, "SYS_EXECVE"),
            (libc::SYS_openat2, "SYS_OPENAT2"),
            (libc::SYS_futex_waitv, "SYS_FUTEX_WAITV"),
            (451, "SYS_CACHESTAT"),
            (340, "SYS_UNKNOWN"),
            (100_000, "SYS_UNKNOWN"),
        ];
        for &(n, want) in cases {
            assert_eq!(run(|s| syscall(s, n as u64)), want, "{n}");
        }
        // Every errno the C library names has the same name here.
        for (n, name) in [
            (libc::EPERM, "EPERM"),
            (libc::ENOTEMPTY, "ENOTEMPTY"),
            (libc::ECONNREFUSED, "ECONNREFUSED"),
        ] {
            assert_eq!(run(|s| errno(s, n as u64)), name);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn open_flags_and_modes() {
        let o = |f: i32| f as u32;
        let cases: &[(u32, &str)] = &[
            (0, "O_RDONLY"),
            (o(libc::O_RDONLY | libc::O_CLOEXEC), "O_RDONLY|O_CLOEXEC"),
            (
                o(libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC),
                "O_WRONLY|O_CREAT|O_TRUNC",
            ),
            (o(libc::O_RDWR | libc::O_SYNC), "O_RDWR|O_SYNC"),
            (o(libc::O_DSYNC), "O_RDONLY|O_DSYNC"),
            (o(libc::O_TMPFILE | libc::O_RDWR), "O_RDWR|O_TMPFILE"),
            (
                o(libc::O_DIRECTORY | libc::O_PATH),
                "O_RDONLY|O_DIRECTORY|O_PATH",
            ),
            (3, "O_ACCMODE"),
            (0x4000_0000, "O_RDONLY|0x40000000"),
        ];
        for &(flags, want) in cases {
            assert_eq!(run(|s| file_flags(s, flags)), want, "{flags:o}");
        }
        let modes: &[(u32, &str)] = &[
            (0o644, "-rw-r--r--"),
            (0o100644, "-rw-r--r--"),
            (0o040755, "drwxr-xr-x"),
            (0o120777, "lrwxrwxrwx"),
            (0o4755, "-rwsr-xr-x"),
            (0o2644, "-rw-r-Sr--"),
            (0o1777, "-rwxrwxrwt"),
            (0o1776, "-rwxrwxrwT"),
            (0o020600, "crw-------"),
            (0, "----------"),
        ];
        for &(mode, want) in modes {
            assert_eq!(run(|s| file_mode(s, mode)), want, "{mode:o}");
        }
    }

    #[test]
    fn addresses_and_endpoints() {
        let mut v4 = [0u8; 16];
        v4[..4].copy_from_slice(&[10, 0, 0, 1]);
        let v6: [u8; 16] = Ipv6Addr::LOCALHOST.octets();
        assert_eq!(run(|s| ip(s, &v4, 4)), "10.0.0.1");
        assert_eq!(run(|s| endpoint(s, &v4, 4, 443)), "10.0.0.1:443");
        assert_eq!(run(|s| ip(s, &v6, 6)), "::1");
        assert_eq!(run(|s| endpoint(s, &v6, 6, 8080)), "[::1]:8080");
        assert_eq!(run(|s| endpoint(s, &v6, 0, 1)), "");
    }
}
