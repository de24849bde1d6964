//! The container filter of `gadget/mntns_filter.h`, as a handle shared by
//! the operator that knows the containers (the local manager, which fills
//! it) and the eBPF operator (which writes it into the kernel).
//!
//! The two operators never name each other: the CLI creates one
//! [`MntnsFilter`] and hands a clone to each. The local manager enables it
//! while its parameters are applied (before anything is loaded) and keeps
//! the set of selected mount namespaces up to date; the eBPF operator sets
//! the `.rodata` flag [`FLAG_VAR`] before load when the filter is enabled
//! and, after load, attaches the kernel map ([`KernelSet`], written by
//! `bpf::loader`): from then on every change of the set is written to the
//! kernel before [`MntnsFilter::set`] returns, so the local manager knows
//! that a container it selected is in the map (it lets a held runtime go on
//! only then, `containers::hook`). Pure: no kernel here.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

/// `.rodata` bool: filter by mount namespace at all.
pub const FLAG_VAR: &str = "gadget_filter_by_mntns";
/// HASH map, key `gadget_mntns_id` (u64), value u32 (unused): the allowed
/// mount namespaces.
pub const MAP: &str = "gadget_mntns_filter_map";

/// The kernel side of the filter: a set of mount namespace ids.
pub trait KernelSet: Send {
    /// Make the set exactly `ids`.
    fn replace(&mut self, ids: &[u64]) -> Result<(), String>;
}

#[derive(Default)]
struct State {
    enabled: bool,
    ids: BTreeSet<u64>,
    generation: u64,
    kernel: Option<Box<dyn KernelSet>>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("enabled", &self.enabled)
            .field("ids", &self.ids)
            .field("generation", &self.generation)
            .field("kernel", &self.kernel.is_some())
            .finish()
    }
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

    /// Replace the allowed set; the generation moves only on a change,
    /// which is written to the kernel set if one is attached.
    pub fn set(&self, ids: impl IntoIterator<Item = u64>) -> Result<(), String> {
        let ids: BTreeSet<u64> = ids.into_iter().collect();
        let mut s = self.state();
        if s.ids != ids {
            s.ids = ids;
            s.generation += 1;
            let all: Vec<u64> = s.ids.iter().copied().collect();
            if let Some(k) = s.kernel.as_mut() {
                k.replace(&all)?;
            }
        }
        Ok(())
    }

    /// Write the set into `kernel` now and at every change from now on.
    pub fn attach(&self, mut kernel: Box<dyn KernelSet>) -> Result<(), String> {
        let mut s = self.state();
        let all: Vec<u64> = s.ids.iter().copied().collect();
        kernel.replace(&all)?;
        s.kernel = Some(kernel);
        Ok(())
    }

    /// Whether a kernel set is attached.
    pub fn is_attached(&self) -> bool {
        self.state().kernel.is_some()
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
        a.set([3, 1, 2]).unwrap();
        assert_eq!(b.changed_since(&mut seen), Some(vec![1, 2, 3]));
        assert_eq!(b.changed_since(&mut seen), None);
        a.set([2, 3, 1]).unwrap();
        assert_eq!(b.changed_since(&mut seen), None, "same set, no change");
        a.set([]).unwrap();
        assert_eq!(b.changed_since(&mut seen), Some(vec![]));
        assert_eq!(b.ids(), Vec::<u64>::new());
    }

    #[test]
    fn a_filter_allows_everything_until_enabled() {
        let f = MntnsFilter::default();
        f.set([7]).unwrap();
        assert!(f.allows(7) && f.allows(8));
        f.enable();
        assert!(f.allows(7) && !f.allows(8));
    }

    struct Recorder(Arc<Mutex<Vec<Vec<u64>>>>);
    impl KernelSet for Recorder {
        fn replace(&mut self, ids: &[u64]) -> Result<(), String> {
            self.0.lock().unwrap().push(ids.to_vec());
            Ok(())
        }
    }

    #[test]
    fn an_attached_kernel_set_is_written_at_once_and_on_every_change() {
        let f = MntnsFilter::default();
        f.set([7]).unwrap();
        let writes = Arc::new(Mutex::new(Vec::new()));
        f.attach(Box::new(Recorder(writes.clone()))).unwrap();
        assert!(f.is_attached());
        assert_eq!(*writes.lock().unwrap(), [vec![7]]);
        f.set([7]).unwrap();
        assert_eq!(writes.lock().unwrap().len(), 1, "no change, no write");
        f.clone().set([8, 7]).unwrap();
        assert_eq!(*writes.lock().unwrap(), [vec![7], vec![7, 8]]);
    }
}
