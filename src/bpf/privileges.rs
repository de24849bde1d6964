//! Do we hold what loading eBPF needs? Checked before loading, so that the
//! user gets one sentence naming the missing capability instead of an EPERM
//! from deep inside a syscall.

/// Capability numbers from `linux/capability.h`.
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The process lacks what loading eBPF needs.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("ig run needs root, or {missing}; run it with sudo")]
pub struct MissingPrivileges {
    /// The capabilities missing, named.
    pub missing: String,
}

/// Check the effective capabilities in `/proc/self/status`.
pub fn check() -> Result<(), MissingPrivileges> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    check_status(&status)
}

fn check_status(status: &str) -> Result<(), MissingPrivileges> {
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| eff & (1u64 << cap) != 0;
    // CAP_SYS_ADMIN alone also allows everything (older kernels' rule).
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    let missing: Vec<&str> = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .iter()
        .filter(|(c, _)| !has(*c))
        .map(|(_, n)| *n)
        .collect();
    let missing = match missing.as_slice() {
        [one] => format!("the capability {one}"),
        _ => format!("the capabilities {}", missing.join(" and ")),
    };
    Err(MissingPrivileges { missing })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_effective_capabilities() {
        assert!(check_status("Name:\tig\nCapEff:\t000001ffffffffff\n").is_ok());
        assert!(
            check_status("CapEff:\t0000000000200000\n").is_ok(),
            "CAP_SYS_ADMIN alone"
        );
        assert!(
            check_status("CapEff:\t000000c000000000\n").is_ok(),
            "CAP_BPF + CAP_PERFMON"
        );
        let e = check_status("CapEff:\t0000000000000000\n").unwrap_err();
        assert_eq!(e.missing, "the capabilities CAP_BPF and CAP_PERFMON");
        let e = check_status("CapEff:\t0000008000000000\n").unwrap_err();
        assert_eq!(e.missing, "the capability CAP_PERFMON");
        assert!(check_status("garbage").is_err());
    }
}
