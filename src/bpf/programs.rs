//! How each program of a gadget attaches: parsed from its ELF section name
//! (upstream's conventions), plus the fallbacks the gadget declares and the
//! perf-event settings of `gadget.yaml` `programs:`.
//!
//! Pure, so an unsupported section is reported when the image is read, before
//! anything reaches the kernel. `loader.rs` carries the plan out.

use std::collections::BTreeMap;

use super::contract::Contract;
use super::object::ProgramInfo;
use crate::metadata::GadgetMetadata;

/// The attach target upstream uses to switch a program off.
pub const DISABLED_TARGET: &str = "gadget_program_disabled";

/// What a section name asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attach {
    /// `tracepoint/CATEGORY/NAME`.
    TracePoint {
        /// The tracepoint's category (`syscalls`).
        category: String,
        /// The tracepoint (`sys_enter_openat`).
        name: String,
    },
    /// `raw_tp/NAME`.
    RawTracePoint {
        /// The tracepoint.
        name: String,
    },
    /// `tp_btf/NAME`.
    BtfTracePoint {
        /// The tracepoint.
        name: String,
    },
    /// `kprobe/FN` or `kretprobe/FN`.
    KProbe {
        /// The kernel function.
        function: String,
        /// A return probe.
        ret: bool,
    },
    /// `fentry/FN`.
    FEntry {
        /// The kernel function.
        function: String,
    },
    /// `fexit/FN`.
    FExit {
        /// The kernel function.
        function: String,
    },
    /// `lsm/HOOK`.
    Lsm {
        /// The LSM hook.
        hook: String,
    },
    /// `uprobe/<absolute path or library name>:<symbol>`, attached in
    /// the host's and each followed container's files (`bpf::uprobes`).
    UProbe {
        /// The binary or library.
        target: String,
        /// The symbol in it.
        symbol: String,
        /// A return probe.
        ret: bool,
    },
    /// `iter/<target>`: run on demand to produce a snapshot.
    Iter {
        /// The iterator target (`task`, `tcp`...).
        target: String,
    },
    /// A socket filter, attached behind a dispatcher to a packet socket in
    /// each network namespace the run covers.
    Socket,
    /// `classifier/ingress[/NAME]`, `classifier/egress[/NAME]`: a TC
    /// program, attached behind a dispatcher through a TCX link to
    /// `--iface`, or to the host side of each followed container's
    /// interfaces (in the other direction: what enters a container leaves
    /// its host-side veth).
    Tc {
        /// Ingress rather than egress.
        ingress: bool,
    },
    /// `perf_event`: sampled on every CPU.
    PerfEvent(PerfConfig),
    /// Attach target `gadget_program_disabled`: not loaded at all.
    Disabled,
}

/// Sampling of a `perf_event` program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PerfConfig {
    /// What is sampled.
    pub event: PerfEventKind,
    /// Samples per second (default 49, as upstream's profile_cpu).
    pub frequency: u64,
}

/// The perf events we know how to open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PerfEventKind {
    /// `PERF_COUNT_SW_CPU_CLOCK`.
    SoftwareCpuClock,
    /// `PERF_COUNT_SW_TASK_CLOCK`.
    SoftwareTaskClock,
    /// `PERF_COUNT_HW_CPU_CYCLES`.
    HardwareCpuCycles,
    /// `PERF_COUNT_HW_INSTRUCTIONS`.
    HardwareInstructions,
}

/// One program and how to attach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramPlan {
    /// The program (its function's name).
    pub name: String,
    /// Its ELF section.
    pub section: String,
    /// Where it attaches.
    pub attach: Attach,
    /// Program to use instead when this one is refused by the kernel.
    pub fallback: Option<String>,
    /// This program is another one's fallback: loaded only if needed.
    pub is_fallback: bool,
}

/// Why the programs of an object cannot be planned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    /// Program `program`'s section `section` is not one ig can attach.
    #[error(
        "program {program}: section {section:?} is not supported (supported: tracepoint/CAT/NAME, raw_tp/NAME, \
         tp_btf/NAME, kprobe/FN, kretprobe/FN, fentry/FN, fexit/FN, lsm/HOOK, uprobe/PATH:SYMBOL, \
         uretprobe/PATH:SYMBOL, iter/TARGET, socket, classifier/ingress/NAME, classifier/egress/NAME, perf_event)"
    )]
    UnsupportedSection {
        /// The program.
        program: String,
        /// The section.
        section: String,
    },
    /// Marker gadget_program_fallback_`primary`___`fallback`: no program named
    /// `missing`.
    #[error("marker gadget_program_fallback_{primary}___{fallback}: no program named {missing}")]
    MissingFallbackProgram {
        /// The primary program.
        primary: String,
        /// The fallback program.
        fallback: String,
        /// What is missing.
        missing: String,
    },
    /// gadget.yaml's `programs.PROGRAM.KEY` is invalid.
    #[error("gadget.yaml programs.{program}.{key}: {message}")]
    BadPerfConfig {
        /// The program.
        program: String,
        /// The key.
        key: String,
        /// What went wrong.
        message: String,
    },
}

/// Parse one section name.
pub fn parse_section(
    program: &str,
    section: &str,
    meta: &GadgetMetadata,
) -> Result<Attach, PlanError> {
    let unsupported = || PlanError::UnsupportedSection {
        program: program.to_owned(),
        section: section.to_owned(),
    };
    let (kind, target) = section.split_once('/').unwrap_or((section, ""));
    if target == DISABLED_TARGET || target.ends_with(&format!(":{DISABLED_TARGET}")) {
        return Ok(Attach::Disabled);
    }
    let nonempty = |s: &str| {
        if s.is_empty() {
            Err(unsupported())
        } else {
            Ok(s.to_owned())
        }
    };
    Ok(match kind {
        "tracepoint" | "tp" => {
            let (category, name) = target.split_once('/').ok_or_else(unsupported)?;
            Attach::TracePoint {
                category: nonempty(category)?,
                name: nonempty(name)?,
            }
        }
        "raw_tracepoint" | "raw_tp" => Attach::RawTracePoint {
            name: nonempty(target)?,
        },
        "tp_btf" => Attach::BtfTracePoint {
            name: nonempty(target)?,
        },
        "kprobe" | "kretprobe" => Attach::KProbe {
            function: nonempty(target)?,
            ret: kind == "kretprobe",
        },
        "fentry" => Attach::FEntry {
            function: nonempty(target)?,
        },
        "fexit" => Attach::FExit {
            function: nonempty(target)?,
        },
        "lsm" => Attach::Lsm {
            hook: nonempty(target)?,
        },
        "uprobe" | "uretprobe" => {
            let (path, symbol) = target.rsplit_once(':').ok_or_else(unsupported)?;
            // Upstream's rule: an absolute path or a library name.
            if super::uprobes::Target::parse(path).is_none() {
                return Err(unsupported());
            }
            Attach::UProbe {
                target: nonempty(path)?,
                symbol: nonempty(symbol)?,
                ret: kind == "uretprobe",
            }
        }
        "iter" => Attach::Iter {
            target: nonempty(target)?,
        },
        // Upstream names socket filters socket1, socket2...; `compat`
        // renames those sections socket/1, socket/2... for aya.
        "socket" => Attach::Socket,
        k if k
            .strip_prefix("socket")
            .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
            && target.is_empty() =>
        {
            Attach::Socket
        }
        "classifier" => match target.split('/').collect::<Vec<_>>().as_slice() {
            ["ingress"] | ["ingress", _] => Attach::Tc { ingress: true },
            ["egress"] | ["egress", _] => Attach::Tc { ingress: false },
            _ => return Err(unsupported()),
        },
        // Upstream names the settings after the section's suffix
        // (`perf_event/profiler` → `programs.profiler`); without a suffix,
        // the program's own name.
        "perf_event" => Attach::PerfEvent(perf_config(
            if target.is_empty() { program } else { target },
            meta,
        )?),
        _ => return Err(unsupported()),
    })
}

/// `programs.<name>.perf.{type,config}` and `programs.<name>.sampler.frequency`.
fn perf_config(program: &str, meta: &GadgetMetadata) -> Result<PerfConfig, PlanError> {
    let bad = |key: &str, message: String| PlanError::BadPerfConfig {
        program: program.to_owned(),
        key: key.to_owned(),
        message,
    };
    let mut cfg = PerfConfig {
        event: PerfEventKind::SoftwareCpuClock,
        frequency: 49,
    };
    let Some(p) = meta.programs.get(program) else {
        return Ok(cfg);
    };
    let get = |path: &[&str]| {
        let mut v = p;
        for k in path {
            v = v.get(*k)?;
        }
        Some(v)
    };
    let ty = get(&["perf", "type"])
        .and_then(|v| v.as_str())
        .unwrap_or("software");
    let config = get(&["perf", "config"])
        .and_then(|v| v.as_str())
        .unwrap_or("count_sw_cpu_clock");
    cfg.event = match (ty, config) {
        ("software", "count_sw_cpu_clock" | "cpu-clock") => PerfEventKind::SoftwareCpuClock,
        ("software", "count_sw_task_clock" | "task-clock") => PerfEventKind::SoftwareTaskClock,
        ("hardware", "count_hw_cpu_cycles" | "cpu-cycles") => PerfEventKind::HardwareCpuCycles,
        ("hardware", "count_hw_instructions" | "instructions") => {
            PerfEventKind::HardwareInstructions
        }
        _ => {
            return Err(bad(
                "perf",
                format!(
                    "unsupported event type {ty:?} config {config:?} (supported: software count_sw_cpu_clock, \
                     count_sw_task_clock; hardware count_hw_cpu_cycles, count_hw_instructions)"
                ),
            ));
        }
    };
    if let Some(f) = get(&["sampler", "frequency"]) {
        cfg.frequency = f.as_u64().filter(|f| *f > 0).ok_or_else(|| {
            bad(
                "sampler.frequency",
                format!("expected a positive number, found {f:?}"),
            )
        })?;
    }
    Ok(cfg)
}

/// The plan for every program of the object.
pub fn plan(
    programs: &[ProgramInfo],
    contract: &Contract,
    meta: &GadgetMetadata,
) -> Result<Vec<ProgramPlan>, PlanError> {
    let fallbacks: BTreeMap<&str, &str> = contract
        .fallbacks
        .iter()
        .map(|(p, f)| (p.as_str(), f.as_str()))
        .collect();
    for (p, f) in &fallbacks {
        for name in [p, f] {
            if !programs.iter().any(|x| x.name == *name) {
                return Err(PlanError::MissingFallbackProgram {
                    primary: (*p).to_owned(),
                    fallback: (*f).to_owned(),
                    missing: (*name).to_owned(),
                });
            }
        }
    }
    programs
        .iter()
        .map(|p| {
            Ok(ProgramPlan {
                name: p.name.clone(),
                section: p.section.clone(),
                attach: parse_section(&p.name, &p.section, meta)?,
                fallback: fallbacks.get(p.name.as_str()).map(|f| (*f).to_owned()),
                is_fallback: fallbacks.values().any(|f| *f == p.name),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(section: &str) -> Result<Attach, PlanError> {
        parse_section("p", section, &GadgetMetadata::default())
    }

    #[test]
    fn sections() {
        let s = |x: &str| x.to_owned();
        let cases = [
            (
                "tracepoint/syscalls/sys_enter_execve",
                Attach::TracePoint {
                    category: s("syscalls"),
                    name: s("sys_enter_execve"),
                },
            ),
            (
                "tp/sched/sched_switch",
                Attach::TracePoint {
                    category: s("sched"),
                    name: s("sched_switch"),
                },
            ),
            (
                "raw_tp/sched_switch",
                Attach::RawTracePoint {
                    name: s("sched_switch"),
                },
            ),
            (
                "raw_tracepoint/sys_enter",
                Attach::RawTracePoint {
                    name: s("sys_enter"),
                },
            ),
            (
                "tp_btf/sched_process_exec",
                Attach::BtfTracePoint {
                    name: s("sched_process_exec"),
                },
            ),
            (
                "kretprobe/vfs_read",
                Attach::KProbe {
                    function: s("vfs_read"),
                    ret: true,
                },
            ),
            (
                "fentry/vfs_read",
                Attach::FEntry {
                    function: s("vfs_read"),
                },
            ),
            (
                "uprobe/libc:malloc",
                Attach::UProbe {
                    target: s("libc"),
                    symbol: s("malloc"),
                    ret: false,
                },
            ),
            (
                "uretprobe//usr/lib/x86_64-linux-gnu/libssl.so.3:SSL_read",
                Attach::UProbe {
                    target: s("/usr/lib/x86_64-linux-gnu/libssl.so.3"),
                    symbol: s("SSL_read"),
                    ret: true,
                },
            ),
            ("iter/task", Attach::Iter { target: s("task") }),
            ("socket", Attach::Socket),
            ("socket1", Attach::Socket),
            ("socket/1", Attach::Socket),
            ("kprobe/gadget_program_disabled", Attach::Disabled),
            ("classifier/ingress/main", Attach::Tc { ingress: true }),
            ("classifier/egress/main", Attach::Tc { ingress: false }),
            ("classifier/egress", Attach::Tc { ingress: false }),
            (
                "perf_event",
                Attach::PerfEvent(PerfConfig {
                    event: PerfEventKind::SoftwareCpuClock,
                    frequency: 49,
                }),
            ),
        ];
        for (section, want) in cases {
            assert_eq!(parse(section), Ok(want), "{section}");
        }
        for bad in [
            "xdp",
            "tracepoint/only_category",
            "uprobe/no_symbol",
            "uprobe/lib/relative.so:sym",
            "iter/",
            "classifier",
            "classifier/sideways/x",
            "classifier/ingress/a/b",
            "socketx",
            "tc",
        ] {
            assert!(
                matches!(parse(bad), Err(PlanError::UnsupportedSection { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn perf_settings_come_from_gadget_yaml() {
        let meta = GadgetMetadata::parse(
            b"name: p\nprograms:\n  prof:\n    perf:\n      type: software\n      config: count_sw_cpu_clock\n      sampleType: sample_raw\n    sampler:\n      frequency: 99\n",
            "g.yaml",
        )
        .unwrap();
        assert_eq!(
            parse_section("ig_prof_cpu", "perf_event/prof", &meta),
            Ok(Attach::PerfEvent(PerfConfig {
                event: PerfEventKind::SoftwareCpuClock,
                frequency: 99
            })),
            "upstream's perf_event/<name> sections name their settings"
        );
        assert_eq!(
            parse_section("prof", "perf_event", &meta),
            Ok(Attach::PerfEvent(PerfConfig {
                event: PerfEventKind::SoftwareCpuClock,
                frequency: 99
            }))
        );
        let meta = GadgetMetadata::parse(
            b"programs:\n  prof:\n    perf:\n      type: tracepoint\n",
            "g.yaml",
        )
        .unwrap();
        assert!(matches!(
            parse_section("prof", "perf_event", &meta),
            Err(PlanError::BadPerfConfig { .. })
        ));
    }

    #[test]
    fn fallbacks_are_paired_and_checked() {
        let progs = |names: &[(&str, &str)]| -> Vec<ProgramInfo> {
            names
                .iter()
                .map(|(n, s)| ProgramInfo {
                    name: (*n).into(),
                    section: (*s).into(),
                })
                .collect()
        };
        let contract = Contract {
            fallbacks: vec![("fast".into(), "slow".into())],
            ..Contract::default()
        };
        let p = plan(
            &progs(&[
                ("fast", "fentry/vfs_read"),
                ("slow", "tracepoint/syscalls/sys_enter_read"),
            ]),
            &contract,
            &GadgetMetadata::default(),
        )
        .unwrap();
        assert_eq!(p[0].fallback.as_deref(), Some("slow"));
        assert!(!p[0].is_fallback);
        assert!(p[1].is_fallback);
        let e = plan(
            &progs(&[("fast", "fentry/vfs_read")]),
            &contract,
            &GadgetMetadata::default(),
        )
        .unwrap_err();
        assert!(matches!(e, PlanError::MissingFallbackProgram { .. }));
    }
}
