//! What the eBPF operator shares with a gadget's WASM guest, as a handle
//! both hold: the configuration the guest sets before the gadget loads
//! (upstream's `setConfig`, e.g. `programs.<name>.attach_to`), and the
//! gadget's maps once it is loaded (upstream's `getMap`).
//!
//! The two operators never name each other (like [`super::mntns_filter`]):
//! the CLI creates one [`SharedGadget`] and hands a clone to each. The
//! guest writes configuration during `gadgetInit` or `gadgetPreStart`; the
//! eBPF operator reads it when it starts (after every pre-start, see
//! `pipeline::Instance::pre_start`), applies it to its program plan
//! ([`apply_config`]), marks the gadget loaded and publishes its maps,
//! which it withdraws when it stops. Pure: the maps are descriptors
//! opened elsewhere (`maps.rs`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::maps::MapFd;
use super::programs::{Attach, DISABLED_TARGET, PlanError, ProgramPlan, parse_section};
use crate::metadata::GadgetMetadata;

#[derive(Debug, Default)]
struct State {
    config: BTreeMap<String, String>,
    /// The eBPF operator read the configuration: later writes are late.
    loaded: bool,
    maps: BTreeMap<String, Arc<MapFd>>,
}

/// A shared handle; clones see the same state. (A mutex only because a
/// WASM guest's host state must be `Send`: never contended.)
#[derive(Clone, Debug, Default)]
pub struct SharedGadget(Arc<Mutex<State>>);

impl SharedGadget {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Set configuration key `key` to `value`. `false` when the gadget
    /// was loaded already: the value is kept but changes nothing.
    pub fn set_config(&self, key: &str, value: &str) -> bool {
        let mut s = self.state();
        s.config.insert(key.to_owned(), value.to_owned());
        !s.loaded
    }

    /// The configuration set so far; from now on the gadget counts as
    /// loaded (later writes are reported as having no effect).
    pub fn take_config_for_load(&self) -> BTreeMap<String, String> {
        let mut s = self.state();
        s.loaded = true;
        s.config.clone()
    }

    /// The loaded gadget's maps, by name.
    pub fn publish_maps(&self, maps: impl IntoIterator<Item = (String, MapFd)>) {
        let mut s = self.state();
        s.maps = maps.into_iter().map(|(n, m)| (n, Arc::new(m))).collect();
    }

    /// The gadget is unloaded: no map can be found any more (handles a
    /// guest took keep theirs until it releases them).
    pub fn withdraw_maps(&self) {
        self.state().maps.clear();
    }

    /// The loaded map `name`, once the gadget is loaded.
    pub fn map(&self, name: &str) -> Option<Arc<MapFd>> {
        self.state().maps.get(name).cloned()
    }

    /// Names of the published maps, for messages.
    pub fn map_names(&self) -> Vec<String> {
        self.state().maps.keys().cloned().collect()
    }
}

/// The configuration key upstream's eBPF operator reads for a program's
/// attach target.
fn attach_to_program(key: &str) -> Option<&str> {
    key.strip_prefix("programs.")?.strip_suffix(".attach_to")
}

/// Apply `programs.<name>.attach_to` keys to `plan`: the program attaches
/// where the value says (the kind stays its section's: a kprobe stays a
/// kprobe), or not at all for `gadget_program_disabled`. Returns warnings
/// for keys that change nothing (another key, an unknown program); a
/// target the section's kind cannot take is an error.
pub fn apply_config(
    plan: &mut [ProgramPlan],
    config: &BTreeMap<String, String>,
    meta: &GadgetMetadata,
) -> Result<Vec<String>, PlanError> {
    let mut warnings = Vec::new();
    for (key, value) in config {
        let Some(name) = attach_to_program(key) else {
            warnings.push(format!(
                "configuration {key}={value:?} changes nothing: ig reads only programs.<program>.attach_to"
            ));
            continue;
        };
        let Some(p) = plan.iter_mut().find(|p| p.name == name) else {
            let names: Vec<&str> = plan.iter().map(|p| p.name.as_str()).collect();
            warnings.push(format!(
                "configuration {key}: the gadget has no program {name} (its programs: {})",
                names.join(", ")
            ));
            continue;
        };
        // The section as the configuration makes it, for messages.
        let kind = p.section.split('/').next().unwrap_or_default();
        let section = format!("{kind}/{value}");
        p.attach = if value == DISABLED_TARGET {
            Attach::Disabled
        } else {
            parse_section(&p.name, &section, meta)?
        };
        p.section = section;
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(sections: &[(&str, &str)]) -> Vec<ProgramPlan> {
        sections
            .iter()
            .map(|(name, section)| ProgramPlan {
                name: (*name).to_owned(),
                section: (*section).to_owned(),
                attach: parse_section(name, section, &GadgetMetadata::default()).unwrap(),
                fallback: None,
                is_fallback: false,
            })
            .collect()
    }

    fn config(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn attach_to_retargets_disables_and_warns() {
        let mut plan = plan_of(&[
            ("read_e", "kprobe/ext4_file_read_iter"),
            ("tp", "tracepoint/syscalls/sys_enter_getppid"),
            ("statfs", "kretprobe/ext4_statfs"),
        ]);
        let warnings = apply_config(
            &mut plan,
            &config(&[
                ("programs.read_e.attach_to", "xfs_file_read_iter"),
                ("programs.tp.attach_to", "syscalls/sys_enter_getpid"),
                ("programs.statfs.attach_to", "gadget_program_disabled"),
                ("programs.nope.attach_to", "x"),
                ("operator.foo", "bar"),
            ]),
            &GadgetMetadata::default(),
        )
        .unwrap();
        assert_eq!(
            plan[0].attach,
            Attach::KProbe {
                function: "xfs_file_read_iter".into(),
                ret: false
            }
        );
        assert_eq!(plan[0].section, "kprobe/xfs_file_read_iter");
        assert_eq!(
            plan[1].attach,
            Attach::TracePoint {
                category: "syscalls".into(),
                name: "sys_enter_getpid".into()
            }
        );
        assert_eq!(plan[2].attach, Attach::Disabled);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].contains("operator.foo") && warnings[0].contains("changes nothing"),
            "{warnings:?}"
        );
        assert!(
            warnings[1].contains("no program nope (its programs: read_e, tp, statfs)"),
            "{warnings:?}"
        );
        // A tracepoint target without its category is refused.
        let e = apply_config(
            &mut plan,
            &config(&[("programs.tp.attach_to", "getpid")]),
            &GadgetMetadata::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("tracepoint/getpid"), "{e}");
    }

    #[test]
    fn writes_after_the_load_are_reported_late() {
        let g = SharedGadget::default();
        let other = g.clone();
        assert!(g.set_config("programs.a.attach_to", "x"));
        assert_eq!(
            other.take_config_for_load(),
            config(&[("programs.a.attach_to", "x")])
        );
        assert!(!g.set_config("programs.a.attach_to", "y"));
        assert!(g.map("events").is_none());
    }
}
