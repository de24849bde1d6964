//! Loading a gadget object into the kernel and attaching its programs.
//!
//! The only file that calls aya to create kernel objects. Everything it
//! creates (maps, programs, links) is owned by the returned
//! [`LoadedGadget`] through file descriptors: dropping it (or the process
//! dying, even by SIGKILL) releases all of it. We never pin, so nothing can
//! outlive `ig`.

use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::{Program, ProgramError};
use aya::{Ebpf, EbpfLoader};

use super::object::{ObjectInfo, ProgramInfo};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("preparing the eBPF object for the kernel (maps, relocations)")]
    Prepare(#[source] aya::EbpfError),
    #[error(
        "permission denied while loading eBPF: run as root, or with CAP_BPF, CAP_PERFMON and CAP_SYS_RESOURCE"
    )]
    Permission(#[source] aya::EbpfError),
    #[error("the kernel's verifier rejected program {program} (section {section}): {errno}\n{log}")]
    Verifier {
        program: String,
        section: String,
        errno: std::io::Error,
        log: String,
    },
    #[error("the kernel refused to load program {program} (section {section}){hint}")]
    ProgramLoad {
        program: String,
        section: String,
        hint: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("attaching program {program} (section {section}){hint}")]
    Attach {
        program: String,
        section: String,
        hint: String,
        #[source]
        source: Box<ProgramError>,
    },
    #[error(
        "program {program}: section {section} is not supported (supported: {SUPPORTED_SECTIONS})"
    )]
    UnsupportedSection { program: String, section: String },
    #[error("program {program} is in the object's symbol table but aya did not load it")]
    MissingProgram { program: String },
    #[error("reading the kernel's BTF from /sys/kernel/btf/vmlinux (needed for {section})")]
    KernelBtf {
        section: String,
        #[source]
        source: aya::BtfError,
    },
    #[error("map {map} is missing from the object")]
    MissingMap { map: String },
    #[error("map {map}")]
    Map {
        map: String,
        #[source]
        source: aya::maps::MapError,
    },
}

/// Verifier logs of big programs run to tens of thousands of lines; the
/// reason is at the end.
const MAX_LOG_LINES: usize = 200;

/// The last `max` lines of `log`, with a note on what was left out.
fn log_tail(log: &str, max: usize) -> String {
    let lines: Vec<&str> = log.trim_end().lines().collect();
    if lines.len() <= max {
        return lines.join("\n");
    }
    format!(
        "[{} earlier lines of the verifier log omitted]\n{}",
        lines.len() - max,
        lines[lines.len() - max..].join("\n")
    )
}

/// Program sections we attach, for error messages.
pub const SUPPORTED_SECTIONS: &str = "tracepoint/, tp/, raw_tracepoint/, raw_tp/, tp_btf/, kprobe/, kretprobe/, fentry/, fexit/, lsm/";

/// How to load: the object plus the `.rodata` values to write before load.
pub struct LoadSpec<'a> {
    pub object: &'a [u8],
    pub info: &'a ObjectInfo,
    /// `(variable, bytes)`: written into `.rodata`; variables the object does
    /// not have are ignored (headers differ between gadgets).
    pub globals: &'a [(String, Vec<u8>)],
    /// `(map, max_entries)`, e.g. to resize ring buffers.
    pub max_entries: &'a [(String, u32)],
}

/// A loaded and attached gadget. Dropping it detaches and frees everything.
pub struct LoadedGadget {
    ebpf: Ebpf,
}

impl LoadedGadget {
    /// Create the maps, load every program and attach each by its section.
    /// On error, whatever was created is released before returning.
    pub fn load(spec: &LoadSpec<'_>) -> Result<Self, LoadError> {
        let mut loader = EbpfLoader::new();
        for (name, value) in spec.globals {
            loader.override_global(name, value.as_slice(), false);
        }
        for (name, n) in spec.max_entries {
            loader.map_max_entries(name, *n);
        }
        let mut ebpf = loader.load(spec.object).map_err(|e| {
            if is_eperm(&e) {
                LoadError::Permission(e)
            } else {
                LoadError::Prepare(e)
            }
        })?;
        let mut kernel_btf = None;
        for p in &spec.info.programs {
            let prog = ebpf
                .program_mut(&p.name)
                .ok_or_else(|| LoadError::MissingProgram {
                    program: p.name.clone(),
                })?;
            load_and_attach(prog, p, &mut kernel_btf)?;
        }
        Ok(Self { ebpf })
    }

    /// Take a ring buffer out of the object for reading.
    pub fn ring_buffer(&mut self, map: &str) -> Result<RingBuffer, LoadError> {
        let m = self
            .ebpf
            .take_map(map)
            .ok_or_else(|| LoadError::MissingMap {
                map: map.to_owned(),
            })?;
        let rb = RingBuf::try_from(m).map_err(|source| LoadError::Map {
            map: map.to_owned(),
            source,
        })?;
        Ok(RingBuffer { rb })
    }

    /// The `<map>_lost_samples` per-CPU counter of a tracer map, if the
    /// object declares one.
    pub fn lost_counter(&mut self, map: &str) -> Result<Option<LostCounter>, LoadError> {
        let name = format!("{map}_lost_samples");
        let Some(m) = self.ebpf.take_map(&name) else {
            return Ok(None);
        };
        let arr = PerCpuArray::try_from(m).map_err(|source| LoadError::Map {
            map: name.clone(),
            source,
        })?;
        Ok(Some(LostCounter { arr, seen: 0, name }))
    }
}

/// A ring buffer we read samples from.
pub struct RingBuffer {
    rb: RingBuf<MapData>,
}

impl RingBuffer {
    /// Hand every pending sample to `f`, without blocking. Returns how many.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        while let Some(item) = self.rb.next() {
            f(&item);
            n += 1;
        }
        n
    }

    pub fn fd(&self) -> RawFd {
        self.rb.as_raw_fd()
    }
}

/// Reads a `<map>_lost_samples` counter. The kernel side only increments;
/// we remember the last total and report the difference, so no increment
/// can be lost between a read and a reset.
pub struct LostCounter {
    arr: PerCpuArray<MapData, u64>,
    seen: u64,
    name: String,
}

impl LostCounter {
    /// Samples dropped since the last call.
    pub fn take_new(&mut self) -> Result<u64, LoadError> {
        let values = self.arr.get(&0, 0).map_err(|source| LoadError::Map {
            map: self.name.clone(),
            source,
        })?;
        let total = values.iter().fold(0u64, |acc, v| acc.wrapping_add(*v));
        let new = total.wrapping_sub(self.seen);
        self.seen = total;
        Ok(new)
    }
}

fn is_eperm(e: &aya::EbpfError) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io.raw_os_error() == Some(libc::EPERM);
        }
        src = s.source();
    }
    false
}

/// `kind/rest` split of a section name.
fn split_section(section: &str) -> (&str, &str) {
    section.split_once('/').unwrap_or((section, ""))
}

fn load_and_attach(
    prog: &mut Program,
    p: &ProgramInfo,
    kernel_btf: &mut Option<aya::Btf>,
) -> Result<(), LoadError> {
    let (kind, target) = split_section(&p.section);
    let load_err = |source: ProgramError| match source {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } if !verifier_log.to_string().trim().is_empty() => LoadError::Verifier {
            program: p.name.clone(),
            section: p.section.clone(),
            errno: io_error,
            log: log_tail(&verifier_log.to_string(), MAX_LOG_LINES),
        },
        source => LoadError::ProgramLoad {
            program: p.name.clone(),
            section: p.section.clone(),
            hint: load_hint(kind),
            // Without a verifier log, the errno is all there is to say.
            source: match source {
                ProgramError::LoadError { io_error, .. } => Box::new(io_error),
                other => Box::new(other),
            },
        },
    };
    let attach_err = |source: ProgramError| LoadError::Attach {
        program: p.name.clone(),
        section: p.section.clone(),
        hint: attach_hint(kind),
        source: Box::new(source),
    };
    let unsupported = || LoadError::UnsupportedSection {
        program: p.name.clone(),
        section: p.section.clone(),
    };
    match (kind, prog) {
        ("tracepoint" | "tp", Program::TracePoint(tp)) => {
            let (category, name) = target.split_once('/').ok_or_else(unsupported)?;
            tp.load().map_err(load_err)?;
            tp.attach(category, name).map_err(attach_err)?;
        }
        ("raw_tracepoint" | "raw_tp", Program::RawTracePoint(tp)) => {
            tp.load().map_err(load_err)?;
            tp.attach(target).map_err(attach_err)?;
        }
        ("tp_btf", Program::BtfTracePoint(tp)) => {
            tp.load(target, kernel_btf_cached(kernel_btf, &p.section)?)
                .map_err(load_err)?;
            tp.attach().map_err(attach_err)?;
        }
        ("kprobe" | "kretprobe", Program::KProbe(kp)) => {
            kp.load().map_err(load_err)?;
            kp.attach(target, 0).map_err(attach_err)?;
        }
        ("fentry", Program::FEntry(f)) => {
            f.load(target, kernel_btf_cached(kernel_btf, &p.section)?)
                .map_err(load_err)?;
            f.attach().map_err(attach_err)?;
        }
        ("fexit", Program::FExit(f)) => {
            f.load(target, kernel_btf_cached(kernel_btf, &p.section)?)
                .map_err(load_err)?;
            f.attach().map_err(attach_err)?;
        }
        ("lsm", Program::Lsm(l)) => {
            l.load(target, kernel_btf_cached(kernel_btf, &p.section)?)
                .map_err(load_err)?;
            l.attach().map_err(attach_err)?;
        }
        _ => return Err(unsupported()),
    }
    Ok(())
}

/// The kernel's BTF, read once per load and only when a program needs it.
fn kernel_btf_cached<'a>(
    cache: &'a mut Option<aya::Btf>,
    section: &str,
) -> Result<&'a aya::Btf, LoadError> {
    if cache.is_none() {
        let b = aya::Btf::from_sys_fs().map_err(|source| LoadError::KernelBtf {
            section: section.to_owned(),
            source,
        })?;
        *cache = Some(b);
    }
    Ok(cache.as_ref().expect("set just above"))
}

/// A sentence on the likely cause, for program kinds whose failures have a
/// common, kernel-level reason.
fn load_hint(kind: &str) -> String {
    match kind {
        "fentry" | "fexit" | "lsm" | "tp_btf" => format!(
            ": {kind} programs need BPF trampolines, which kernel lockdown or a missing \
             CONFIG_DEBUG_INFO_BTF forbids; use a tracepoint-based gadget on this host"
        ),
        _ => String::new(),
    }
}

fn attach_hint(kind: &str) -> String {
    match kind {
        "kprobe" | "kretprobe" if !Path::new("/sys/bus/event_source/devices/kprobe").exists() => {
            ": this kernel has no kprobe support (CONFIG_KPROBES is off); use a tracepoint-based gadget".to_owned()
        }
        "tracepoint" | "tp" if !Path::new("/sys/kernel/tracing/events").exists() => {
            ": tracefs is not mounted at /sys/kernel/tracing (mount -t tracefs tracefs /sys/kernel/tracing)"
                .to_owned()
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_split_into_kind_and_target() {
        assert_eq!(
            split_section("tracepoint/syscalls/sys_enter_execve"),
            ("tracepoint", "syscalls/sys_enter_execve")
        );
        assert_eq!(
            split_section("raw_tp/sched_switch"),
            ("raw_tp", "sched_switch")
        );
        assert_eq!(split_section("socket"), ("socket", ""));
    }

    #[test]
    fn long_verifier_logs_keep_their_end() {
        let log: String = (0..500).map(|i| format!("line {i}\n")).collect();
        let t = log_tail(&log, 200);
        assert!(
            t.starts_with("[300 earlier lines of the verifier log omitted]\nline 300\n"),
            "{t}"
        );
        assert!(t.ends_with("line 499"));
        assert_eq!(log_tail("a\nb\n", 200), "a\nb");
    }

    #[test]
    fn hints_name_the_kernel_reason() {
        assert!(load_hint("fentry").contains("lockdown"));
        assert!(load_hint("tracepoint").is_empty());
    }
}
