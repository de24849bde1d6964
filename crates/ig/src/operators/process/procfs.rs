//! Pure parsers of the `/proc` files the process operator reads:
//! `/proc/PID/stat`, `/proc/PID/status`, `/proc/meminfo`, `btime` of
//! `/proc/stat` and `/sys/devices/system/cpu/online`. Tested with bytes.

/// What `/proc/PID/stat` gives: CPU times in clock ticks, priority, nice
/// and the start time in ticks since boot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    pub utime: u64,
    pub stime: u64,
    pub priority: i64,
    pub nice: i64,
    pub starttime: u64,
}

/// Fields of `/proc/PID/stat` after the command (which may hold spaces
/// and parentheses: it ends at the last `)`). `None` for a malformed line.
pub fn parse_stat(data: &[u8]) -> Option<Stat> {
    let close = data.iter().rposition(|&c| c == b')')?;
    let open = data.iter().position(|&c| c == b'(')?;
    if close <= open {
        return None;
    }
    let rest = std::str::from_utf8(&data[close + 1..]).ok()?;
    // Field numbers of proc_pid_stat(5): 3 is the state, the first after
    // the command.
    let mut s = Stat::default();
    for (i, f) in rest.split_ascii_whitespace().enumerate() {
        let n = i + 3;
        match n {
            14 => s.utime = f.parse().ok()?,
            15 => s.stime = f.parse().ok()?,
            18 => s.priority = f.parse().ok()?,
            19 => s.nice = f.parse().ok()?,
            22 => {
                s.starttime = f.parse().ok()?;
                return Some(s);
            }
            _ => {}
        }
    }
    None
}

/// What `/proc/PID/status` gives. Memory in bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub name: String,
    pub ppid: i64,
    pub state: String,
    /// Real user id (the first of the four on the `Uid:` line).
    pub uid: u32,
    pub vm_size: u64,
    pub vm_rss: u64,
    /// `RssShmem` + `RssFile`: what upstream reports as shared memory.
    pub shared: u64,
    pub threads: i64,
}

/// Parse `/proc/PID/status`. Lines that are absent (kernel threads have
/// no `Vm*`) leave their value at zero.
pub fn parse_status(data: &[u8]) -> Status {
    let mut s = Status::default();
    for line in data.split(|&c| c == b'\n') {
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            continue;
        };
        let (key, value) = (&line[..colon], &line[colon + 1..]);
        let text = || String::from_utf8_lossy(value).trim().to_owned();
        let first_number = || -> u64 {
            String::from_utf8_lossy(value)
                .split_ascii_whitespace()
                .next()
                .and_then(|w| w.parse().ok())
                .unwrap_or(0)
        };
        match key {
            b"Name" => s.name = unescape(value.strip_prefix(b"\t").unwrap_or(value)),
            b"PPid" => s.ppid = i64::try_from(first_number()).unwrap_or(0),
            b"State" => s.state = text().chars().next().map(String::from).unwrap_or_default(),
            b"Uid" => s.uid = u32::try_from(first_number()).unwrap_or(0),
            b"VmSize" => s.vm_size = first_number() * 1024,
            b"VmRSS" => s.vm_rss = first_number() * 1024,
            b"RssShmem" | b"RssFile" => s.shared += first_number() * 1024,
            b"Threads" => s.threads = i64::try_from(first_number()).unwrap_or(0),
            _ => {}
        }
    }
    s
}

/// The command name as `status` escapes it (`\n`, `\\`...), restored.
fn unescape(b: &[u8]) -> String {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            let c = match b[i + 1] {
                b'f' => Some(0x0c),
                b'n' => Some(b'\n'),
                b'r' => Some(b'\r'),
                b't' => Some(b'\t'),
                b'v' => Some(0x0b),
                b'"' => Some(b'"'),
                b'\\' => Some(b'\\'),
                b'a' => Some(0x07),
                b'e' => Some(0x1b),
                _ => None,
            };
            if let Some(c) = c {
                out.push(c);
                i += 2;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
pub fn parse_mem_total(data: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(data).ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line
        .trim_start_matches("MemTotal:")
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// `btime` of `/proc/stat`: boot time in seconds since the epoch.
pub fn parse_btime(data: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(data).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// How many CPUs a list such as `0-3,8,10-11` names.
pub fn count_cpu_list(text: &str) -> Option<usize> {
    let mut n = 0usize;
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
                n += b.checked_sub(a)? + 1;
            }
            None => {
                part.parse::<usize>().ok()?;
                n += 1;
            }
        }
    }
    Some(n)
}

/// `M:SS.mmm` of a CPU time in clock ticks of 10 ms, as upstream shows
/// `cpuTimeStr`.
pub fn cpu_time_str(ticks: u64) -> String {
    let ms = ticks * 10;
    format!("{}:{:02}.{:03}", ms / 60_000, (ms / 1000) % 60, ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_after_a_command_with_spaces_and_parens() {
        let line = b"4242 (a (b) c) R 1 4242 4242 0 -1 4194304 100 0 0 0 250 17 0 0 20 -5 3 0 123456 1000 100 ...";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                utime: 250,
                stime: 17,
                priority: 20,
                nice: -5,
                starttime: 123_456,
            })
        );
        assert_eq!(parse_stat(b"1 (x"), None);
        assert_eq!(parse_stat(b"1 (x) R 1 2"), None);
    }

    #[test]
    fn status_fields() {
        let status = b"Name:\tmy\\nprog\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t7\nPPid:\t1\nUid:\t1000\t1000\t1000\t1000\nVmSize:\t  12345 kB\nVmRSS:\t   2048 kB\nRssFile:\t    1000 kB\nRssShmem:\t      24 kB\nThreads:\t3\n";
        let s = parse_status(status);
        assert_eq!(
            s,
            Status {
                name: "my\nprog".into(),
                ppid: 1,
                state: "S".into(),
                uid: 1000,
                vm_size: 12345 * 1024,
                vm_rss: 2048 * 1024,
                shared: 1024 * 1024,
                threads: 3,
            }
        );
        let kthread =
            parse_status(b"Name:\tkworker/0:1\nState:\tI (idle)\nPPid:\t2\nThreads:\t1\n");
        assert_eq!(kthread.vm_rss, 0);
        assert_eq!(kthread.state, "I");
    }

    #[test]
    fn system_files() {
        assert_eq!(
            parse_mem_total(b"MemTotal:        8049912 kB\nMemFree: 1 kB\n"),
            Some(8_049_912 * 1024)
        );
        assert_eq!(
            parse_btime(b"cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
        assert_eq!(count_cpu_list("0-3,8,10-11\n"), Some(7));
        assert_eq!(count_cpu_list("0"), Some(1));
        assert_eq!(count_cpu_list("3-1"), None);
    }

    #[test]
    fn formatting_like_upstream() {
        assert_eq!(cpu_time_str(0), "0:00.000");
        assert_eq!(cpu_time_str(6543), "1:05.430");
    }
}
