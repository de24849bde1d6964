//! The container filter of `gadget/mntns_filter.h`, as a handle shared by
//! the operator that knows the containers (the local manager, which fills
//! it) and the eBPF operator (which writes it into the kernel).
//!
//! The two operators never name each other: the CLI creates one
//! [`MntnsFilter`] and hands a clone to each. The local manager enables it
//! while its parameters are applied (before anything is loaded) and keeps
//! the set of selected mount namespaces up to date on the flush timer; the
//! eBPF operator sets the `.rodata` flag [`FLAG_VAR`] before load when the
//! filter is enabled, fills [`MAP`] after load, and re-syncs the map on its
//! own tick whenever the set's generation changed. Pure: no kernel here.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

/// `.rodata` bool: filter by mount namespace at all.
pub const FLAG_VAR: &str = "gadget_filter_by_mntns";
/// HASH map, key `gadget_mntns_id` (u64), value u32 (unused): the allowed
/// mount namespaces.
pub const MAP: &str = "gadget_mntns_filter_map";

#[derive(Debug, Default)]
struct State {
    enabled: bool,
    ids: BTreeSet<u64>,
    generation: u64,
}

/// A shared handle; clones see the same state. (A mutex only because a
/// WASM guest's host state must be `Send` for wasmtime: the run is one
/// thread, so it is never contended.)
#[derive(Clone, Debug, Default)]
pub struct MntnsFilter(Arc<Mutex<State>>);

impl MntnsFilter {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Ask for filtering in the kernel (before load).
    pub fn enable(&self) {
        self.state().enabled = true;
    }

    /// Whether the filter is on (some container was selected).
    pub fn is_enabled(&self) -> bool {
        self.state().enabled
    }

    /// Replace the allowed set; the generation moves only on a change.
    pub fn set(&self, ids: impl IntoIterator<Item = u64>) {
        let ids: BTreeSet<u64> = ids.into_iter().collect();
        let mut s = self.state();
        if s.ids != ids {
            s.ids = ids;
            s.generation += 1;
        }
    }

    /// The allowed set if it changed since generation `*seen` (updated).
    pub fn changed_since(&self, seen: &mut u64) -> Option<Vec<u64>> {
        let s = self.state();
        if s.generation == *seen {
            return None;
        }
        *seen = s.generation;
        Some(s.ids.iter().copied().collect())
    }

    /// Whether events of mount namespace `id` pass the filter (always
    /// when it is not enabled): a WASM guest's `shouldDiscardMntnsID`.
    pub fn allows(&self, id: u64) -> bool {
        let s = self.state();
        !s.enabled || s.ids.contains(&id)
    }

    /// The allowed set now.
    pub fn ids(&self) -> Vec<u64> {
        self.state().ids.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_state_and_generations_track_changes() {
        let a = MntnsFilter::default();
        let b = a.clone();
        assert!(!b.is_enabled());
        a.enable();
        assert!(b.is_enabled());
        let mut seen = 0;
        assert_eq!(b.changed_since(&mut seen), None);
        a.set([3, 1, 2]);
        assert_eq!(b.changed_since(&mut seen), Some(vec![1, 2, 3]));
        assert_eq!(b.changed_since(&mut seen), None);
        a.set([2, 3, 1]);
        assert_eq!(b.changed_since(&mut seen), None, "same set, no change");
        a.set([]);
        assert_eq!(b.changed_since(&mut seen), Some(vec![]));
        assert_eq!(b.ids(), Vec::<u64>::new());
    }

    #[test]
    fn a_filter_allows_everything_until_enabled() {
        let f = MntnsFilter::default();
        f.set([7]);
        assert!(f.allows(7) && f.allows(8));
        f.enable();
        assert!(f.allows(7) && !f.allows(8));
    }
}
