//! Pure parsers for the cgroup operator: which hierarchy holds the CPU
//! controller (`/proc/self/mountinfo`), a process's cgroup in it
//! (`/proc/PID/cgroup`), and the controller's files, cgroup v2
//! (`cpu.max`, `cpu.stat` with `throttled_usec`) and v1 (`cpu.cfs_quota_us`,
//! `cpu.cfs_period_us`, `cpu.stat` with `throttled_time` in ns), plus
//! `cpu.pressure`. Tested with text.

use std::path::{Path, PathBuf};

/// Where the CPU controller is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hierarchy {
    /// Enabled on the unified hierarchy mounted at `mount`.
    V2 {
        /// Where cgroup2 is mounted.
        mount: PathBuf,
    },
    /// A v1 hierarchy with `cpu` among its controllers, mounted at
    /// `mount`; `root` is the hierarchy path the mount shows (`/` unless
    /// a sub-tree is mounted).
    V1 {
        /// Where the hierarchy is mounted.
        mount: PathBuf,
        /// The hierarchy path the mount shows.
        root: String,
    },
}

impl Hierarchy {
    /// The directory of cgroup `path` (as `/proc/PID/cgroup` names it).
    pub fn dir(&self, path: &str) -> Option<PathBuf> {
        let (mount, rel) = match self {
            Self::V2 { mount } => (mount, path),
            Self::V1 { mount, root } => {
                let rel = if root == "/" {
                    path
                } else {
                    path.strip_prefix(root.as_str())?
                };
                (mount, rel)
            }
        };
        Some(mount.join(rel.trim_start_matches('/')))
    }

    /// 1 or 2.
    pub fn version(&self) -> u8 {
        match self {
            Self::V2 { .. } => 2,
            Self::V1 { .. } => 1,
        }
    }
}

/// One line of `mountinfo`: mount root, mount point, type, super options.
fn mount_line(line: &str) -> Option<(&str, &str, &str, &str)> {
    let (pre, post) = line.split_once(" - ")?;
    let mut pre = pre.split(' ');
    let root = pre.nth(3)?;
    let point = pre.next()?;
    let mut post = post.split(' ');
    let fstype = post.next()?;
    let _source = post.next()?;
    let opts = post.next().unwrap_or("");
    Some((root, point, fstype, opts))
}

/// Undo mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Find the CPU controller: cgroup v2 when it is enabled there (its
/// `cgroup.controllers`, read through `controllers`, names `cpu`), else a
/// cgroup v1 hierarchy with `cpu`. The error says what is missing.
pub fn detect(
    mountinfo: &str,
    controllers: &dyn Fn(&Path) -> Option<String>,
) -> Result<Hierarchy, String> {
    let mut v2_seen = None;
    let mut v1 = None;
    for line in mountinfo.lines() {
        let Some((root, point, fstype, opts)) = mount_line(line) else {
            continue;
        };
        match fstype {
            "cgroup2" if v2_seen.is_none() => {
                let mount = PathBuf::from(unescape(point));
                let list = controllers(&mount).unwrap_or_default();
                if list.split_ascii_whitespace().any(|c| c == "cpu") {
                    return Ok(Hierarchy::V2 { mount });
                }
                v2_seen = Some((mount, list));
            }
            "cgroup" if v1.is_none() && opts.split(',').any(|o| o == "cpu") => {
                v1 = Some(Hierarchy::V1 {
                    mount: PathBuf::from(unescape(point)),
                    root: unescape(root),
                });
            }
            _ => {}
        }
    }
    if let Some(h) = v1 {
        return Ok(h);
    }
    Err(match v2_seen {
        Some((mount, list)) => format!(
            "the cpu controller is not enabled on cgroup v2 ({}/cgroup.controllers: {}) nor mounted as a cgroup v1 hierarchy",
            mount.display(),
            if list.trim().is_empty() { "none" } else { list.trim() }
        ),
        None => "no cgroup filesystem with the cpu controller is mounted (neither cgroup2 nor cgroup v1 with cpu)".to_owned(),
    })
}

/// The cgroup of a process in `h`, from `/proc/PID/cgroup`.
pub fn process_cgroup<'a>(h: &Hierarchy, text: &'a str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let id = parts.next()?;
        let controllers = parts.next()?;
        let path = parts.next()?;
        match h {
            Hierarchy::V2 { .. } => (id == "0" && controllers.is_empty()).then_some(path),
            Hierarchy::V1 { .. } => controllers.split(',').any(|c| c == "cpu").then_some(path),
        }
    })
}

/// A bandwidth limit: quota and period in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub quota_us: u64,
    pub period_us: u64,
}

/// `cpu.max` (v2): `None` for `max` (no limit).
pub fn parse_cpu_max(text: &str) -> Result<Option<Limit>, String> {
    let mut w = text.split_ascii_whitespace();
    let (Some(q), Some(p), None) = (w.next(), w.next(), w.next()) else {
        return Err(format!("unexpected cpu.max {:?}", text.trim()));
    };
    let period_us = p
        .parse()
        .map_err(|_| format!("unexpected cpu.max {:?}", text.trim()))?;
    if q == "max" {
        return Ok(None);
    }
    let quota_us = q
        .parse()
        .map_err(|_| format!("unexpected cpu.max {:?}", text.trim()))?;
    Ok(Some(Limit {
        quota_us,
        period_us,
    }))
}

/// `cpu.cfs_quota_us` and `cpu.cfs_period_us` (v1): `None` for `-1`.
pub fn parse_cfs(quota: &str, period: &str) -> Result<Option<Limit>, String> {
    let q: i64 = quota
        .trim()
        .parse()
        .map_err(|_| format!("unexpected cpu.cfs_quota_us {:?}", quota.trim()))?;
    let period_us = period
        .trim()
        .parse()
        .map_err(|_| format!("unexpected cpu.cfs_period_us {:?}", period.trim()))?;
    Ok(u64::try_from(q).ok().map(|quota_us| Limit {
        quota_us,
        period_us,
    }))
}

/// Cumulative throttling counters of a cgroup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Throttling {
    pub periods: u64,
    pub throttled: u64,
    pub throttled_ns: u64,
}

/// `cpu.stat`: `nr_periods`, `nr_throttled`, and `throttled_usec` (v2) or
/// `throttled_time` in nanoseconds (v1).
pub fn parse_cpu_stat(text: &str) -> Throttling {
    let mut t = Throttling::default();
    for l in text.lines() {
        let mut w = l.split_ascii_whitespace();
        let (Some(k), Some(v)) = (w.next(), w.next()) else {
            continue;
        };
        let Ok(v) = v.parse::<u64>() else { continue };
        match k {
            "nr_periods" => t.periods = v,
            "nr_throttled" => t.throttled = v,
            "throttled_usec" => t.throttled_ns = v.saturating_mul(1000),
            "throttled_time" => t.throttled_ns = v,
            _ => {}
        }
    }
    t
}

/// `avg10` and `avg60` of the `some` line of `cpu.pressure`.
pub fn parse_pressure(text: &str) -> Option<(f64, f64)> {
    let line = text.lines().find(|l| l.starts_with("some "))?;
    let mut avg10 = 0.0;
    let mut avg60 = 0.0;
    for f in line.split_ascii_whitespace() {
        if let Some((k, v)) = f.split_once('=') {
            match k {
                "avg10" => avg10 = v.parse().unwrap_or(0.0),
                "avg60" => avg60 = v.parse().unwrap_or(0.0),
                _ => {}
            }
        }
    }
    Some((avg10, avg60))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's kind: v1 with cpu, v2 without it.
    const HYBRID: &str = "\
25 30 0:22 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
28 25 0:25 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
";

    #[test]
    fn detects_where_the_cpu_controller_is() {
        let none = |_: &Path| Some("hugetlb\n".to_owned());
        assert_eq!(
            detect(HYBRID, &none),
            Ok(Hierarchy::V1 {
                mount: "/sys/fs/cgroup/cpu,cpuacct".into(),
                root: "/".into()
            })
        );
        let cpu = |_: &Path| Some("cpuset cpu io memory pids\n".to_owned());
        assert_eq!(
            detect(HYBRID, &cpu),
            Ok(Hierarchy::V2 {
                mount: "/sys/fs/cgroup/unified".into()
            })
        );
        let v2_only = "26 25 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            detect(v2_only, &none).unwrap_err(),
            "the cpu controller is not enabled on cgroup v2 (/sys/fs/cgroup/cgroup.controllers: hugetlb) nor mounted as a cgroup v1 hierarchy"
        );
        assert!(
            detect("", &none)
                .unwrap_err()
                .starts_with("no cgroup filesystem")
        );
        let spaced = "27 25 0:24 /sub /mnt/my\\040cg rw - cgroup cgroup rw,cpu\n";
        let h = detect(spaced, &none).unwrap();
        assert_eq!(h.dir("/sub/a/b"), Some(PathBuf::from("/mnt/my cg/a/b")));
        assert_eq!(h.dir("/elsewhere"), None);
    }

    #[test]
    fn a_process_cgroup_in_each_hierarchy() {
        let text = "12:pids:/p\n4:cpu,cpuacct:/user.slice/x\n0::/init.scope\n";
        let v1 = Hierarchy::V1 {
            mount: "/m".into(),
            root: "/".into(),
        };
        let v2 = Hierarchy::V2 { mount: "/u".into() };
        assert_eq!(process_cgroup(&v1, text), Some("/user.slice/x"));
        assert_eq!(process_cgroup(&v2, text), Some("/init.scope"));
        assert_eq!(process_cgroup(&v1, "3:cpuacct:/a\n"), None);
        assert_eq!(
            v1.dir("/user.slice/x"),
            Some(PathBuf::from("/m/user.slice/x"))
        );
        assert_eq!(v2.dir("/"), Some(PathBuf::from("/u/")));
    }

    #[test]
    fn controller_files() {
        assert_eq!(
            parse_cpu_max("50000 100000\n"),
            Ok(Some(Limit {
                quota_us: 50_000,
                period_us: 100_000
            }))
        );
        assert_eq!(parse_cpu_max("max 100000\n"), Ok(None));
        assert!(parse_cpu_max("max\n").is_err());
        assert_eq!(
            parse_cfs("10000\n", "100000\n"),
            Ok(Some(Limit {
                quota_us: 10_000,
                period_us: 100_000
            }))
        );
        assert_eq!(parse_cfs("-1\n", "100000\n"), Ok(None));
        assert_eq!(
            parse_cpu_stat("usage_usec 5\nnr_periods 10\nnr_throttled 4\nthrottled_usec 1500\n"),
            Throttling {
                periods: 10,
                throttled: 4,
                throttled_ns: 1_500_000
            }
        );
        assert_eq!(
            parse_cpu_stat("nr_periods 3\nnr_throttled 1\nthrottled_time 987654\nnr_bursts 0\n"),
            Throttling {
                periods: 3,
                throttled: 1,
                throttled_ns: 987_654
            }
        );
        assert_eq!(
            parse_pressure(
                "some avg10=1.50 avg60=0.25 avg300=0.00 total=1\nfull avg10=9 avg60=9\n"
            ),
            Some((1.5, 0.25))
        );
        assert_eq!(parse_pressure(""), None);
    }
}
