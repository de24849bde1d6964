//! Where programs that follow containers attach, as a handle shared by the
//! operator that knows the containers (the local manager, which publishes
//! them) and the eBPF operator (which attaches uprobes in each container's
//! files, socket filters in each network namespace, TC programs on each
//! container's host-side interfaces).
//!
//! The same pattern as [`super::mntns_filter`]: the CLI creates one
//! [`Targets`] and hands a clone to each side. The eBPF operator says it
//! wants containers (`want`) when its object has programs that follow
//! them, before the operators are instantiated; the local manager then
//! stays active even for gadgets without a mount namespace field, walks
//! `/proc` every second, and publishes the host (when the run includes
//! it) and the selected containers at every walk; the eBPF operator picks
//! up a changed set on its own tick. Pure: no kernel here.

use std::sync::{Arc, Mutex, MutexGuard};

/// One container programs attach to: enough to find its files
/// (`/proc/PID/root`), its network namespace and its interfaces.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Workload {
    /// The container id (unique; the key attachments are kept by).
    pub id: String,
    /// For messages.
    pub name: String,
    /// A process of the container (its init).
    pub pid: u32,
    /// Its mount namespace inode.
    pub mntns: u64,
    /// Its network namespace inode.
    pub netns: u64,
}

/// The host and the containers of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetSet {
    /// The run includes the host (no `-c`, or `--host`).
    pub host: bool,
    /// The selected containers, sorted by id.
    pub containers: Vec<Workload>,
}

impl TargetSet {
    /// The host alone: what a run without a local manager covers.
    pub fn host_only() -> Self {
        Self {
            host: true,
            containers: Vec::new(),
        }
    }
}

#[derive(Debug)]
struct State {
    wanted: bool,
    /// Whether anything was published yet (before that, `set` is the
    /// default: the host only, as when no local manager runs).
    published: bool,
    set: TargetSet,
    generation: u64,
}

impl Default for State {
    fn default() -> Self {
        Self {
            wanted: false,
            published: false,
            set: TargetSet::host_only(),
            generation: 0,
        }
    }
}

/// A shared handle; clones see the same state (a mutex for the same reason
/// as `MntnsFilter`'s: never contended, the run is one thread).
#[derive(Clone, Debug, Default)]
pub struct Targets(Arc<Mutex<State>>);

impl Targets {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The eBPF operator follows containers: keep them published.
    pub fn want(&self) {
        self.state().wanted = true;
    }

    /// Whether some program wants the targets (`want` was called).
    pub fn is_wanted(&self) -> bool {
        self.state().wanted
    }

    /// Replace the set; the generation moves only on a change.
    pub fn publish(&self, host: bool, mut containers: Vec<Workload>) {
        containers.sort();
        containers.dedup_by(|a, b| a.id == b.id);
        let set = TargetSet { host, containers };
        let mut s = self.state();
        s.published = true;
        if s.set != set {
            s.set = set;
            s.generation += 1;
        }
    }

    /// Whether the local manager published anything yet.
    pub fn is_published(&self) -> bool {
        self.state().published
    }

    /// The set now.
    pub fn current(&self) -> TargetSet {
        self.state().set.clone()
    }

    /// The set if it changed since generation `*seen` (updated).
    pub fn changed_since(&self, seen: &mut u64) -> Option<TargetSet> {
        let s = self.state();
        if s.generation == *seen {
            return None;
        }
        *seen = s.generation;
        Some(s.set.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(id: &str) -> Workload {
        Workload {
            id: id.into(),
            name: id.into(),
            pid: 1,
            mntns: 2,
            netns: 3,
        }
    }

    #[test]
    fn host_only_until_published_then_changes_only() {
        let a = Targets::default();
        let b = a.clone();
        assert!(!b.is_wanted());
        a.want();
        assert!(b.is_wanted());
        assert_eq!(
            b.current(),
            TargetSet {
                host: true,
                containers: vec![]
            }
        );
        assert!(!b.is_published());
        let mut seen = 0;
        assert_eq!(b.changed_since(&mut seen), None);
        a.publish(false, vec![w("b"), w("a"), w("a")]);
        let got = b.changed_since(&mut seen).unwrap();
        assert!(!got.host);
        assert_eq!(got.containers, vec![w("a"), w("b")]);
        assert_eq!(b.changed_since(&mut seen), None);
        a.publish(false, vec![w("a"), w("b")]);
        assert_eq!(
            b.changed_since(&mut seen),
            None,
            "same set, same generation"
        );
        a.publish(true, vec![w("a"), w("b")]);
        assert!(b.changed_since(&mut seen).unwrap().host);
    }
}
