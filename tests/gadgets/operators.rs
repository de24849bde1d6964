//! The gadgets of `gadgets/` made of operators only: top_process (the
//! process operator) and bpfstats (the eBPF statistics operator).

use std::time::Duration;

use serde_json::Value;

use super::{Forked, Running, rows, run_bounded, u};

/// Fields after the command of `/proc/PID/stat`, numbered from 3.
fn stat_field(stat: &str, n: usize) -> i64 {
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    rest.split_whitespace().nth(n - 3).unwrap().parse().unwrap()
}

fn status_kib(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap()
}

fn online_cpus() -> f64 {
    let t = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    t.trim()
        .split(',')
        .map(|p| match p.split_once('-') {
            Some((a, b)) => b.parse::<u32>().unwrap() - a.parse::<u32>().unwrap() + 1,
            None => 1,
        })
        .sum::<u32>()
        .into()
}

#[test]
fn top_process_shows_our_busy_and_sleeping_children() {
    let busy = Forked::start(c"igbusy", true);
    let sleeper = Forked::start(c"igsleep", false);
    // An early table at 250 ms (first-interval), then two, a second apart:
    // --count ends the run.
    let out = run_bounded(&[
        "run",
        "top_process",
        "-o",
        "json",
        "--interval",
        "1s",
        "--count",
        "2",
    ]);
    assert!(out.status.success(), "{}", super::text(&out.stderr));
    let tables: Vec<Value> = super::text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(tables.len(), 3, "early table and two more");
    let row = |t: &Value, pid: u64| -> Value {
        t.as_array()
            .unwrap()
            .iter()
            .find(|r| r["pid"] == pid)
            .unwrap_or_else(|| panic!("pid {pid} missing"))
            .clone()
    };
    let me = u64::from(std::process::id());
    let cpus = online_cpus();
    // The sleeper, exactly as /proc says after the run.
    let stat = sleeper.proc("stat");
    let status = sleeper.proc("status");
    let btime: i64 = std::fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .unwrap()
        .parse()
        .unwrap();
    let started = btime + stat_field(&stat, 22) / 100;
    for t in &tables {
        let r = row(t, sleeper.pid());
        assert_eq!(r["comm"], "igsleep", "{r}");
        assert_eq!(r["ppid"], me, "{r}");
        assert_eq!(r["state"], "S", "{r}");
        assert_eq!(r["threadCount"], 1, "{r}");
        // SAFETY: geteuid has no preconditions.
        assert_eq!(r["uid"], unsafe { libc::geteuid() }, "{r}");
        assert_eq!(r["cpuUsage"], 0.0, "{r}");
        assert_eq!(
            r["cpuTime"],
            stat_field(&stat, 14) + stat_field(&stat, 15),
            "{r}"
        );
        assert_eq!(r["priority"], stat_field(&stat, 18), "{r}");
        assert_eq!(r["nice"], stat_field(&stat, 19), "{r}");
        assert_eq!(r["startTime"], stat_field(&stat, 22), "{r}");
        assert_eq!(
            r["startTimeStr"].as_str().unwrap(),
            format_utc(started),
            "{r}"
        );
        assert_eq!(
            u(&r["memoryRSS_raw"]),
            status_kib(&status, "VmRSS:") * 1024,
            "{r}"
        );
        assert_eq!(
            u(&r["memoryVirtual_raw"]),
            status_kib(&status, "VmSize:") * 1024,
            "{r}"
        );
        let mnt = std::fs::read_link(format!("/proc/{}/ns/mnt", sleeper.raw())).unwrap();
        assert_eq!(
            format!("mnt:[{}]", r["mountnsid"]),
            mnt.to_string_lossy(),
            "{r}"
        );
    }
    // The busy child: its CPU share over each interval, from the ticks it
    // used (cpuTime), and within what one spinning thread can get.
    for pair in tables.windows(2) {
        let (before, now) = (row(&pair[0], busy.pid()), row(&pair[1], busy.pid()));
        assert_eq!(now["comm"], "igbusy");
        let ticks = u(&now["cpuTime"]) - u(&before["cpuTime"]);
        let cpu = now["cpuUsage"].as_f64().unwrap();
        // The interval is 1 s as scheduled, give or take the reading.
        let (lo, hi) = (ticks as f64 / 1.3, ticks as f64 / 0.9);
        assert!(cpu >= lo && cpu <= hi, "{cpu} for {ticks} ticks: {now}");
        assert!((10.0..=110.0).contains(&cpu), "a busy child: {now}");
        // serde_json reads floats to within one unit in the last place.
        let rel = now["cpuUsageRelative"].as_f64().unwrap();
        assert!((rel - cpu / cpus).abs() <= 1e-12 * cpu, "{now}");
    }
}

/// `2023-11-14T22:13:20Z` of a Unix time, computed here independently.
fn format_utc(secs: i64) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    super::text(&out.stdout).trim().to_owned()
}

fn bpftool(args: &[&str]) -> Value {
    let out = std::process::Command::new("bpftool")
        .arg("-j")
        .args(args)
        .output()
        .expect("bpftool (installed by cargo xtask setup)");
    assert!(out.status.success(), "{}", super::text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Map ids of program `id`, and the memory of map `id`, as bpftool says.
fn prog_maps(id: u64) -> Vec<u64> {
    bpftool(&["prog", "show", "id", &id.to_string()])["map_ids"]
        .as_array()
        .map(|a| a.iter().map(u).collect())
        .unwrap_or_default()
}

fn map_memlock(id: u64) -> u64 {
    u(&bpftool(&["map", "show", "id", &id.to_string()])["bytes_memlock"])
}

/// `key:` values of the fdinfo files of process `pid`.
fn fdinfo_ids(pid: u32, key: &str) -> std::collections::BTreeSet<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix(key).map(|v| v.trim().parse().unwrap()))
        })
        .collect()
}

/// Open a file of ours `n` times: `n` runs of trace_open's openat program.
fn opens(n: usize) {
    let exe = std::env::current_exe().unwrap();
    for _ in 0..n {
        drop(std::fs::File::open(&exe).unwrap());
    }
}

#[test]
fn bpfstats_shows_the_programs_of_our_trace_open_with_growing_run_counts() {
    // Its programs run on every open of the host; the kernel-side filter
    // keeps their events (of no interest here) from flooding the test.
    let tracer = Running::start(&["trace_open", "--comm", "ig-no-such-comm"]);
    let tpid = tracer.child.id();
    let tpid_s = tpid.to_string();
    let ours = fdinfo_ids(tpid, "prog_id:");
    assert!(!ours.is_empty());
    let mut stats = Running::start(&["bpfstats", "--statistics-interval", "500ms"]);
    let openat = |vs: &[Value]| -> Vec<Value> {
        rows(vs)
            .filter(|r| r["pids"] == tpid_s.as_str() && r["progName"] == "ig_openat_x")
            .cloned()
            .collect()
    };
    // After each report, 200 opens: the next one counts them.
    let mut seen = 0;
    for _ in 0..3 {
        stats.wait_until(Duration::from_secs(10), |vs| vs.len() > seen);
        seen = stats.values.len();
        opens(200);
    }
    stats.wait_until(Duration::from_secs(10), |vs| vs.len() > seen);
    let (values, stderr) = stats.stop();
    let rows_of = openat(&values);
    assert!(rows_of.len() >= 4, "{stderr}\n{rows_of:?}");
    let id = u(&rows_of[0]["progID"]);
    assert!(ours.contains(&id), "one of trace_open's programs");
    let maps = prog_maps(id);
    let memory: u64 = maps.iter().map(|m| map_memlock(*m)).sum();
    for r in &rows_of {
        assert_eq!(r["gadgetImage"], "trace_open", "{r}");
        assert_eq!(r["gadgetID"], tpid.to_string(), "{r}");
        assert_eq!(r["comms"], "ig", "{r}");
        assert_eq!(r["progType"], "TracePoint", "{r}");
        assert_eq!(u(&r["progID"]), id, "{r}");
        assert_eq!(u(&r["mapCount"]), maps.len() as u64, "{r}");
        assert_eq!(u(&r["mapMemory_raw"]), memory, "{r}");
    }
    // Each report after our opens counts them; the total keeps growing.
    let counts: Vec<u64> = rows_of.iter().map(|r| u(&r["runcount"])).collect();
    assert!(
        counts[counts.len() - 3..].iter().all(|c| *c >= 200),
        "{counts:?}"
    );
    let totals: Vec<&str> = rows_of
        .iter()
        .map(|r| r["cpuTimeStr"].as_str().unwrap())
        .collect();
    assert_ne!(totals.first(), totals.last(), "{totals:?}");

    // One row per gadget: its programs and the maps it holds.
    let mut only = Running::start(&[
        "bpfstats",
        "--statistics-interval",
        "500ms",
        "--gadgets-only",
    ]);
    let mine = |vs: &[Value]| -> Vec<Value> {
        rows(vs)
            .filter(|r| r["gadgetID"] == tpid_s.as_str())
            .cloned()
            .collect()
    };
    only.wait_until(Duration::from_secs(10), |vs| !mine(vs).is_empty());
    opens(200);
    let n = mine(&only.values).len();
    only.wait_until(Duration::from_secs(10), |vs| mine(vs).len() > n);
    // The maps the tracer holds and those its programs use, counted once.
    let mut maps = fdinfo_ids(tpid, "map_id:");
    for p in &ours {
        maps.extend(prog_maps(*p));
    }
    let memory: u64 = maps.iter().map(|m| map_memlock(*m)).sum();
    let (values, _) = only.stop();
    let (tracer_values, stderr) = tracer.stop();
    assert!(tracer_values.is_empty(), "{stderr}");
    let rows_of = mine(&values);
    for r in &rows_of {
        assert_eq!(r["gadgetImage"], "trace_open", "{r}");
        assert_eq!(r["pids"], tpid.to_string(), "{r}");
        assert_eq!(r["comms"], "ig", "{r}");
        assert_eq!(r["progID"], 0, "{r}");
        assert_eq!(r["progName"], "", "{r}");
        assert_eq!(u(&r["mapCount"]), maps.len() as u64, "{r}");
        assert_eq!(u(&r["mapMemory_raw"]), memory, "{r}");
    }
    assert!(
        u(&rows_of.last().unwrap()["runcount"]) >= 200,
        "{rows_of:?}"
    );
    // Nothing but gadgets: every row is an `ig run`.
    for r in rows(&values) {
        assert_ne!(r["gadgetImage"], "", "{r}");
    }
}
