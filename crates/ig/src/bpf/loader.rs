//! Loading a gadget object into the kernel and attaching its programs.
//!
//! The only file that calls aya to create kernel objects. Everything it
//! creates (maps, programs, links, perf events, packet sockets) is owned by
//! the returned [`LoadedGadget`] through file descriptors: dropping it (or
//! the process dying, even by SIGKILL) releases all of it. We never pin, so
//! nothing can outlive `ig`: a map the object declares pinned by name is
//! opened when another program pinned it, else made private to the run.
//!
//! What to attach where comes from a [`ProgramPlan`] (pure, `programs.rs`);
//! this file carries it out, including the fallback from a program the
//! kernel refuses to the alternative the gadget declared.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Read as _;
use std::os::fd::{AsFd as _, AsRawFd, FromRawFd as _, OwnedFd, RawFd};
use std::path::Path;

use aya::maps::{MapData, PerCpuArray};
use aya::programs::perf_event::{
    HardwareEvent, PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent,
};
use aya::programs::uprobe::{UProbeAttachLocation, UProbeLinkId, UProbeScope};
use aya::programs::{Program, ProgramError};
use aya::{Ebpf, EbpfLoader};

use super::object::ObjectInfo;
use super::programs::{Attach, PerfEventKind, ProgramPlan};
use super::ring::Ring;
use super::targets::TargetSet;
use super::uprobes::{self, Missing, Probe, RootKey, UprobeSet};
use crate::netif;

/// Why a gadget could not be loaded, attached or read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Preparing the eBPF object for the kernel (maps, relocations) failed.
    #[error("preparing the eBPF object for the kernel (maps, relocations)")]
    Prepare(#[source] aya::EbpfError),
    /// Permission denied while loading eBPF.
    #[error(
        "permission denied while loading eBPF: run as root, or with CAP_BPF, CAP_PERFMON and CAP_SYS_RESOURCE"
    )]
    Permission(#[source] aya::EbpfError),
    /// The kernel's verifier rejected program `program` (section `section`).
    #[error("the kernel's verifier rejected program {program} (section {section}): {errno}\n{log}")]
    Verifier {
        /// The program.
        program: String,
        /// The section.
        section: String,
        /// The error the kernel returned.
        errno: std::io::Error,
        /// The verifier's log.
        log: String,
    },
    /// The kernel refused to load program `program`.
    #[error("the kernel refused to load program {program} (section {section}){hint}")]
    ProgramLoad {
        /// The program.
        program: String,
        /// The section.
        section: String,
        /// What may help, if anything (empty or starting with a separator).
        hint: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Attaching program `program` failed.
    #[error("attaching program {program} (section {section}){hint}")]
    Attach {
        /// The program.
        program: String,
        /// The section.
        section: String,
        /// What may help, if anything (empty or starting with a separator).
        hint: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Program `program` and its fallback `fallback` were both refused.
    #[error(
        "program {program} and its fallback {fallback} were both refused; the fallback's error follows ({primary_error})"
    )]
    NoAlternative {
        /// The program.
        program: String,
        /// The fallback program.
        fallback: String,
        /// The program's own error, as text.
        primary_error: String,
        /// Why.
        #[source]
        source: Box<LoadError>,
    },
    /// Program `program` (section `section`) is of a different kind in aya
    /// (`found`).
    #[error("program {program} (section {section}) is of a different kind in aya ({found})")]
    KindMismatch {
        /// The program.
        program: String,
        /// The section.
        section: String,
        /// What was found.
        found: String,
    },
    /// Program `program` is in the object's symbol table but aya did not load
    /// it.
    #[error("program {program} is in the object's symbol table but aya did not load it")]
    MissingProgram {
        /// The program.
        program: String,
    },
    /// Reading the kernel's BTF from /sys/kernel/btf/vmlinux (needed for
    /// `section`) failed.
    #[error("reading the kernel's BTF from /sys/kernel/btf/vmlinux (needed for {section})")]
    KernelBtf {
        /// The section.
        section: String,
        /// Why.
        #[source]
        source: aya::BtfError,
    },
    /// Reading the kernel's BTF `path` failed.
    #[error("reading the kernel's BTF {path} (needed for {needed_for})")]
    KernelBtfFile {
        /// The file.
        path: &'static str,
        /// What needed it.
        needed_for: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The object needs a rewrite aya cannot do, and ig could not do it either.
    #[error(transparent)]
    Compat(#[from] Box<super::compat::CompatError>),
    /// No program of the gadget could attach.
    #[error("no program of the gadget could attach: {reasons}")]
    NothingAttached {
        /// Why each could not.
        reasons: String,
    },
    /// Map `map` is missing from the object.
    #[error("map {map} is missing from the object")]
    MissingMap {
        /// The map.
        map: String,
    },
    /// Map `map` was expected to be a ring buffer.
    #[error("map {map} is not a ring buffer")]
    NotRingBuf {
        /// The map.
        map: String,
    },
    /// Ring buffer `map` could not be mapped for reading.
    #[error("ring buffer {map}")]
    Ring {
        /// The map.
        map: String,
        /// Why.
        #[source]
        source: super::ring::RingError,
    },
    /// An operation on map `map` failed.
    #[error("map {map}")]
    Map {
        /// The map.
        map: String,
        /// Why.
        #[source]
        source: aya::maps::MapError,
    },
    /// Map `map` cannot take the size asked for.
    #[error("map {map}: {message}")]
    MapSize {
        /// The map.
        map: String,
        /// What went wrong.
        message: String,
    },
    /// Running iterator `program` failed.
    #[error("running iterator {program}")]
    Iterator {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Draining map `map` failed.
    #[error("draining map {map}")]
    Drain {
        /// The map.
        map: String,
        /// Why.
        #[source]
        source: std::io::Error,
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

/// How to load: the object plus the `.rodata` values to write before load.
pub struct LoadSpec<'a> {
    /// The object's bytes (after `bpf::compat::for_aya`).
    pub object: &'a [u8],
    /// The object as parsed.
    pub info: &'a ObjectInfo,
    /// Which programs to load and how to attach them.
    pub plan: &'a [ProgramPlan],
    /// `(variable, bytes)`: written into `.rodata`; variables the object does
    /// not have are ignored (headers differ between gadgets).
    pub globals: &'a [(String, Vec<u8>)],
    /// `(map, max_entries)`, e.g. to resize ring buffers.
    pub max_entries: &'a [(String, u32)],
    /// A loader made ahead of time ([`LoaderPrefetch`]); without one (or
    /// once another load took it) the kernel BTF is parsed here.
    pub prefetch: Option<&'a LoaderPrefetch>,
    /// The host and containers programs that follow containers attach to
    /// (uprobes: in each one's files).
    pub targets: &'a TargetSet,
    /// `(map, descriptor)`: maps of the object replaced by existing ones
    /// (`compat::replace_maps`; the socket enricher's `gadget_sockets`).
    pub replace_maps: &'a [(&'a str, RawFd)],
    /// The BTF the socket enricher's value struct is relocated against
    /// (`compat::resolve_core`).
    pub socket_value_btf: Option<&'a crate::btf::Btf>,
    /// Where TC programs attach (`--iface`); `None`: the host side of the
    /// followed containers' interfaces.
    pub iface: Option<&'a str>,
}

/// A loaded and attached gadget. Dropping it detaches and frees everything.
pub struct LoadedGadget {
    ebpf: Ebpf,
    /// Plan entry of every program in use, by name.
    in_use: BTreeMap<String, ProgramPlan>,
    /// Links of the programs attached to tracepoints, detached in
    /// parallel when the gadget is dropped (see `Drop`).
    tracepoint_links: Vec<(String, aya::programs::trace_point::TracePointLinkId)>,
    /// Uprobes, attached in each root the run covers (`retarget`).
    uprobes: UprobeSet<UProbeLinkId>,
    /// The roots uprobes were attached in (even where nothing was found).
    uprobe_roots: std::collections::BTreeSet<RootKey>,
    /// Socket filter programs, attached in each network namespace the run
    /// covers (`retarget`) behind a dispatcher.
    socket_programs: Vec<String>,
    /// By network namespace: per socket program, its dispatcher and the
    /// packet socket that is attached to (closing them detaches).
    netns_attachments: BTreeMap<u64, Vec<(Ebpf, OwnedFd)>>,
    /// Loads the dispatchers (made once: making one parses the kernel's BTF).
    dispatch_loader: Option<EbpfLoader<'static>>,
    /// TC programs (name, ingress as the gadget declares it).
    tc_programs: Vec<(String, bool)>,
    /// `--iface`: the one interface TC programs attach to, if given.
    tc_iface: Option<netif::Iface>,
    /// By host interface: per TC program, its dispatcher (which owns the
    /// TCX link; dropping it detaches).
    tc_attachments: BTreeMap<netif::Iface, Vec<Ebpf>>,
    /// The set last retargeted to (interfaces are looked for again in it:
    /// a container's veth usually appears after its first process).
    targets: TargetSet,
}

/// Closing a tracepoint's perf event makes the kernel wait for RCU grace
/// periods when the last perf user of that tracepoint goes (60-110 ms each
/// here, measured with `strace -T` on the `close`). One after the other,
/// trace_open's four tracepoints made `ig` take ~300 ms to exit after
/// Ctrl-C. Each link is dropped on a thread of its own, so the waits
/// overlap; everything is still released before `drop` returns.
impl Drop for LoadedGadget {
    fn drop(&mut self) {
        let mut links = Vec::new();
        for (name, id) in self.tracepoint_links.drain(..) {
            if let Some(Program::TracePoint(tp)) = self.ebpf.program_mut(&name)
                && let Ok(link) = tp.take_link(id)
            {
                links.push(link);
            }
        }
        if links.len() < 2 {
            return;
        }
        std::thread::scope(|s| {
            for link in links {
                // If no thread can be had, the closure and the link in it
                // are dropped right here instead.
                let _ = std::thread::Builder::new()
                    .name("ig-detach".into())
                    .spawn_scoped(s, move || drop(link));
            }
        });
    }
}

impl LoadedGadget {
    /// Create the maps, load every program and attach each by its plan.
    /// On error, whatever was created is released before returning.
    pub fn load(spec: &LoadSpec<'_>) -> Result<Self, LoadError> {
        // A map pinned by name is another program's (the GPU bridge's):
        // used when its owner pinned it. When it did not, the map is
        // created private to this run (`compat::unpin_maps` below), never
        // pinned: a pin would outlive ig (invariant 7). Upstream's loader
        // creates and pins it; either way the gadget sees an empty map,
        // which the gadgets that declare such maps expect (profile_cpu
        // reads the GPU bridge's only for its --gpu-idle-only filter), so
        // the user is told once, naming the maps.
        if let Ok(btf) = crate::btf::Btf::parse(&spec.info.btf) {
            let mut missing: Vec<String> = crate::bpf::contract::pinned_maps(&btf)
                .into_iter()
                .filter(|m| !Path::new(PIN_DIR).join(m).exists())
                .collect();
            missing.sort_unstable();
            if !missing.is_empty() {
                let (it, a_map) = if missing.len() == 1 {
                    ("it", "a map")
                } else {
                    ("them", "maps")
                };
                log::warn!(
                    "{} pinned by name (LIBBPF_PIN_BY_NAME) but nothing is pinned under {PIN_DIR} for {it} (is the program that owns {it}, such as the GPU bridge, running?): using {a_map} of this run's own, empty and not pinned",
                    plural_maps(&missing),
                );
            }
        }
        let mut kernel = CompatKernelBtf::default();
        let object = with_core_resolved(spec.object, spec.socket_value_btf, &mut kernel)?;
        let object = with_kconfig_resolved(object, &mut kernel)?;
        drop(kernel);
        let object = if spec.replace_maps.is_empty() {
            object
        } else {
            Cow::Owned(super::compat::replace_maps(&object, spec.replace_maps).map_err(Box::new)?)
        };
        // Pinned maps are shared, never created: the maps whose pin is
        // missing now (even if it was there for the check above) are made
        // private.
        let object =
            super::compat::unpin_maps(&object, |map| Path::new(PIN_DIR).join(map).exists());
        // Made before the loader that borrows it, from the object as aya
        // gets it.
        let NewLoader {
            mut loader,
            kernel_btf,
        } = spec
            .prefetch
            .and_then(LoaderPrefetch::take)
            .unwrap_or_else(new_loader);
        let relocation_btf = relocation_btf(&object, kernel_btf);
        if let Some(btf) = &relocation_btf {
            loader.btf(Some(btf));
        }
        for (name, value) in spec.globals {
            loader.override_global(name, value.as_slice(), false);
        }
        for (name, n) in spec.max_entries {
            loader.map_max_entries(name, *n);
        }
        // A replaced map's own definition is still created, unreferenced:
        // as small as can be.
        for (name, _) in spec.replace_maps {
            loader.map_max_entries(name, 1);
        }
        let ebpf = loader.load(&object).map_err(|e| {
            if is_eperm(&e) {
                LoadError::Permission(e)
            } else {
                LoadError::Prepare(e)
            }
        })?;
        // A stage of its own for `ig -v` (and the leak test, which kills
        // ig when it appears): the maps exist, no program is loaded yet.
        log::debug!("maps created; loading and attaching the programs");
        let mut g = Self {
            ebpf,
            in_use: BTreeMap::new(),
            tracepoint_links: Vec::new(),
            uprobes: UprobeSet::new(Vec::new()),
            uprobe_roots: std::collections::BTreeSet::new(),
            socket_programs: Vec::new(),
            netns_attachments: BTreeMap::new(),
            dispatch_loader: None,
            tc_programs: Vec::new(),
            tc_iface: None,
            tc_attachments: BTreeMap::new(),
            targets: spec.targets.clone(),
        };
        let mut probes = Vec::new();
        let mut kernel_btf = None;
        for p in spec.plan {
            if p.is_fallback {
                continue;
            }
            if p.attach == Attach::Disabled {
                log::debug!(
                    "program {} is disabled by its section ({})",
                    p.name,
                    p.section
                );
                continue;
            }
            match g.load_and_attach(p, &mut kernel_btf) {
                Ok(()) => {
                    if let Some(probe) = probe_of(p) {
                        log::debug!("loaded {} ({})", p.name, p.section);
                        probes.push(probe);
                    } else if matches!(p.attach, Attach::Socket | Attach::Tc { .. }) {
                        // Attached by `retarget`, behind dispatchers.
                        log::debug!("loaded {} ({})", p.name, p.section);
                    } else {
                        log::debug!("attached {} ({})", p.name, p.section);
                    }
                    g.in_use.insert(p.name.clone(), p.clone());
                }
                Err(first) => {
                    let Some(fb) = p
                        .fallback
                        .as_ref()
                        .and_then(|f| spec.plan.iter().find(|x| &x.name == f))
                    else {
                        return Err(first);
                    };
                    log::debug!(
                        "program {} refused ({first}); using its fallback {} ({})",
                        p.name,
                        fb.name,
                        fb.section
                    );
                    g.load_and_attach(fb, &mut kernel_btf).map_err(|e| {
                        LoadError::NoAlternative {
                            program: p.name.clone(),
                            fallback: fb.name.clone(),
                            primary_error: first.to_string(),
                            source: Box::new(e),
                        }
                    })?;
                    log::debug!(
                        "attached {} ({}) instead of {}",
                        fb.name,
                        fb.section,
                        p.name
                    );
                    probes.extend(probe_of(fb));
                    g.in_use.insert(fb.name.clone(), fb.clone());
                }
            }
        }
        g.uprobes = UprobeSet::new(probes);
        g.socket_programs = g
            .in_use
            .values()
            .filter(|p| p.attach == Attach::Socket)
            .map(|p| p.name.clone())
            .collect();
        g.tc_programs = g
            .in_use
            .values()
            .filter_map(|p| match p.attach {
                Attach::Tc { ingress } => Some((p.name.clone(), ingress)),
                _ => None,
            })
            .collect();
        if let (Some(name), Some((prog, _))) = (spec.iface, g.tc_programs.first()) {
            let index = netif::ifindex(name).map_err(|e| LoadError::Attach {
                program: prog.clone(),
                section: "classifier".into(),
                hint: format!(": --iface {name}: no such interface in ig's network namespace"),
                source: Box::new(e),
            })?;
            g.tc_iface = Some(netif::Iface {
                index,
                name: name.to_owned(),
            });
        }
        g.retarget(spec.targets);
        g.report_uprobes(spec.targets)?;
        g.check_sockets(spec.targets)?;
        g.check_tc()?;
        Ok(g)
    }

    /// At start: `--iface` must have every TC program; without it, say
    /// when there is nothing to attach to yet.
    fn check_tc(&mut self) -> Result<(), LoadError> {
        let Some((first, _)) = self.tc_programs.first() else {
            return Ok(());
        };
        match self.tc_iface.clone() {
            Some(iface) => {
                if self.tc_attachments.contains_key(&iface) {
                    return Ok(());
                }
                let host = host_netns().map_err(|e| tc_error(first, Box::new(e)))?;
                let d = self
                    .attach_iface(&iface, host, false)
                    .map_err(|(prog, e)| tc_error(&prog, e))?;
                self.tc_attachments.insert(iface, d);
            }
            None if self.tc_attachments.is_empty() => {
                let names: Vec<&str> = self.tc_programs.iter().map(|(n, _)| n.as_str()).collect();
                log::warn!(
                    "TC programs {}: no --iface, and no container the run follows has a network interface yet: \
                     nothing is attached until one starts (--iface NAME attaches to a host interface)",
                    names.join(", ")
                );
            }
            None => {}
        }
        Ok(())
    }

    /// Dispatchers of every TC program on host interface `iface`, for
    /// network namespace `netns`; `flip`: the interface is a container's
    /// host-side veth, so a program for the container's ingress goes on
    /// its egress and the other way round.
    fn attach_iface(
        &mut self,
        iface: &netif::Iface,
        netns: u64,
        flip: bool,
    ) -> Result<Vec<Ebpf>, (String, BoxError)> {
        use aya::programs::tc::{TcAttachOptions, TcAttachType};
        let mut out = Vec::new();
        for (name, ingress) in self.tc_programs.clone() {
            let name = &name;
            let fail = |e: BoxError| (name.clone(), e);
            let mut d = self
                .dispatcher(name, netns, DispatchKind::Tc)
                .map_err(fail)?;
            let Some(Program::SchedClassifier(p)) = d.program_mut(DispatchKind::Tc.program())
            else {
                return Err(fail("the TC dispatcher is missing".into()));
            };
            let hook = if ingress != flip {
                TcAttachType::Ingress
            } else {
                TcAttachType::Egress
            };
            // TCX: a link owned by a descriptor, gone when ig is (a
            // netlink filter would outlive a killed ig).
            p.attach_with_options(
                &iface.name,
                hook,
                TcAttachOptions::TcxOrder(aya::programs::LinkOrder::default()),
            )
            .map_err(|e| fail(Box::new(e)))?;
            log::debug!(
                "attached {name} (classifier, {hook:?}) to {} (index {}), network namespace {netns}",
                iface.name,
                iface.index
            );
            out.push(d);
        }
        Ok(out)
    }

    /// TC programs: on `--iface` (fixed), or on the host side of each
    /// followed container's interfaces.
    fn retarget_tc(&mut self, set: &TargetSet) {
        if self.tc_programs.is_empty() || self.tc_iface.is_some() {
            return;
        }
        let mut want: BTreeMap<netif::Iface, u64> = BTreeMap::new();
        for c in set.containers.iter().filter(|c| c.netns != 0) {
            match netif::host_peers(c.pid) {
                Ok(ifaces) => {
                    for i in ifaces {
                        want.insert(i, c.netns);
                    }
                }
                Err(e) => log::debug!("TC: interfaces of container {}: {e}", c.name),
            }
        }
        self.tc_attachments.retain(|iface, _| {
            let keep = want.contains_key(iface);
            if !keep {
                log::debug!("TC: {} left the run", iface.name);
            }
            keep
        });
        for (iface, netns) in want {
            if self.tc_attachments.contains_key(&iface) {
                continue;
            }
            match self.attach_iface(&iface, netns, true) {
                Ok(d) => {
                    self.tc_attachments.insert(iface, d);
                }
                Err((prog, e)) => log::debug!(
                    "TC program {prog} on {}: {}",
                    iface.name,
                    super::error_chain(e.as_ref())
                ),
            }
        }
    }

    /// At start: the host's network namespace must have its socket
    /// filters (a failure there is the run's); containers' may fail
    /// alone.
    fn check_sockets(&mut self, set: &TargetSet) -> Result<(), LoadError> {
        if self.socket_programs.is_empty() || !set.host {
            return Ok(());
        }
        let host = host_netns().map_err(|e| socket_error(&self.socket_programs[0], Box::new(e)))?;
        match self.netns_attachments.get(&host) {
            Some(a) if a.len() == self.socket_programs.len() => Ok(()),
            _ => {
                // Attach again in the host's namespace, to report why.
                let sockets = self
                    .attach_netns(host, None)
                    .map_err(|(prog, e)| socket_error(&prog, e))?;
                self.netns_attachments.insert(host, sockets);
                Ok(())
            }
        }
    }

    /// A dispatcher of `kind` for network namespace `netns` in front of
    /// the gadget's program `name` (loaded, not attached).
    fn dispatcher(&mut self, name: &str, netns: u64, kind: DispatchKind) -> Result<Ebpf, BoxError> {
        let prog_fd = self
            .ebpf
            .program(name)
            .ok_or_else(|| format!("program {name} is not loaded"))?
            .fd()?;
        let loader = self.dispatch_loader.get_or_insert_with(|| {
            let mut l = new_loader().loader;
            l.btf(None);
            l
        });
        load_dispatcher(loader, netns, kind, prog_fd)
    }

    /// Dispatchers of every socket program in network namespace `netns`
    /// (`pid`: a process in it; `None`: ours). On error, the program and
    /// why.
    fn attach_netns(
        &mut self,
        netns: u64,
        pid: Option<u32>,
    ) -> Result<Vec<(Ebpf, OwnedFd)>, (String, BoxError)> {
        let mut out = Vec::new();
        for name in self.socket_programs.clone() {
            let name = &name;
            let fail = |e: BoxError| (name.clone(), e);
            let mut d = self
                .dispatcher(name, netns, DispatchKind::Socket)
                .map_err(fail)?;
            let sock = packet_socket_in(pid).map_err(|e| fail(Box::new(e)))?;
            let Some(Program::SocketFilter(sf)) = d.program_mut(DispatchKind::Socket.program())
            else {
                return Err(fail("the socket dispatcher is missing".into()));
            };
            sf.attach(sock.as_fd()).map_err(|e| fail(Box::new(e)))?;
            log::debug!("attached {name} (socket) in network namespace {netns}");
            out.push((d, sock));
        }
        Ok(out)
    }

    /// Network namespaces: attach socket filters where the run now goes,
    /// detach from where it no longer does.
    fn retarget_netns(&mut self, set: &TargetSet) {
        if self.socket_programs.is_empty() {
            return;
        }
        // By namespace: a process in it, or `None` for ours (the host's
        // own namespace is entered from here, even if a container shares
        // it).
        let mut want: BTreeMap<u64, Option<u32>> = BTreeMap::new();
        if set.host {
            match host_netns() {
                Ok(n) => {
                    want.insert(n, None);
                }
                Err(e) => log::debug!("socket filters: our network namespace: {e}"),
            }
        }
        for c in set.containers.iter().filter(|c| c.netns != 0) {
            want.entry(c.netns).or_insert(Some(c.pid));
        }
        self.netns_attachments.retain(|netns, _| {
            let keep = want.contains_key(netns);
            if !keep {
                log::debug!("socket filters: network namespace {netns} left the run");
            }
            keep
        });
        for (netns, pid) in want {
            if self.netns_attachments.contains_key(&netns) {
                continue;
            }
            match self.attach_netns(netns, pid) {
                Ok(sockets) => {
                    self.netns_attachments.insert(netns, sockets);
                }
                Err((prog, e)) => log::debug!(
                    "socket filter {prog} in network namespace {netns}: {}",
                    super::error_chain(e.as_ref())
                ),
            }
        }
    }

    /// Follow the host and containers of `set` (uprobes attach in their files).
    pub fn retarget(&mut self, set: &TargetSet) {
        self.targets = set.clone();
        self.retarget_netns(set);
        self.retarget_tc(set);
        self.retarget_uprobes(set);
    }

    /// Look again for the followed containers' interfaces (TC programs
    /// without `--iface`): interfaces come and go while containers run.
    /// A netlink exchange per container; the caller paces it.
    pub fn refresh_interfaces(&mut self) {
        if !self.tc_programs.is_empty() && self.tc_iface.is_none() {
            let set = self.targets.clone();
            self.retarget_tc(&set);
        }
    }

    fn retarget_uprobes(&mut self, set: &TargetSet) {
        if self.uprobes.is_empty() {
            return;
        }
        let mut want: BTreeMap<RootKey, (Option<u32>, &str)> = BTreeMap::new();
        if set.host {
            want.insert(RootKey::Host, (None, ""));
        }
        for c in &set.containers {
            want.insert(RootKey::Container(c.id.clone()), (Some(c.pid), &c.name));
        }
        let mut a = UprobeAttacher {
            ebpf: &mut self.ebpf,
        };
        let gone: Vec<RootKey> = self
            .uprobe_roots
            .iter()
            .filter(|k| !want.contains_key(*k))
            .cloned()
            .collect();
        for k in gone {
            self.uprobes.remove_root(&mut a, &k);
            self.uprobe_roots.remove(&k);
            log::debug!("uprobes: {k:?} left the run");
        }
        for (k, (pid, name)) in want {
            if self.uprobe_roots.contains(&k) {
                continue;
            }
            match uprobes::open_root(pid) {
                Ok(dir) => {
                    self.uprobes.add_root(&mut a, &k, name, &dir);
                    log::debug!(
                        "uprobes: {} added ({} links in all)",
                        k.describe(name),
                        self.uprobes.link_count()
                    );
                }
                Err(e) => log::debug!("uprobes: the root of {}: {e}", k.describe(name)),
            }
            self.uprobe_roots.insert(k);
        }
    }

    /// At start: one warning per reason uprobes could not attach; an error
    /// when no program of the gadget attached at all and no container can
    /// change that (the run covers the host, so it is not waiting for a
    /// selected container to start).
    fn report_uprobes(&self, set: &TargetSet) -> Result<(), LoadError> {
        let unattached = self.uprobes.unattached();
        if unattached.is_empty() {
            return Ok(());
        }
        let mut by_reason: BTreeMap<Missing, Vec<(&str, &str)>> = BTreeMap::new();
        for (probe, why) in &unattached {
            by_reason
                .entry(why.clone())
                .or_default()
                .push((probe.program.as_str(), probe.symbol.as_str()));
        }
        let lines: Vec<String> = by_reason
            .iter()
            .map(|(why, probes)| why.describe(probes))
            .collect();
        let others = self
            .in_use
            .values()
            .filter(|p| !matches!(p.attach, Attach::UProbe { .. }))
            .count();
        if others == 0 && !self.uprobes.any_attached() && set.host {
            return Err(LoadError::NothingAttached {
                reasons: lines.join("; "),
            });
        }
        for l in lines {
            log::warn!("uprobes not attached: {l}");
        }
        Ok(())
    }

    /// Names of the programs loaded (after fallbacks), with their sections.
    pub fn programs_in_use(&self) -> impl Iterator<Item = (&str, &str)> {
        self.in_use
            .values()
            .map(|p| (p.name.as_str(), p.section.as_str()))
    }

    fn load_and_attach(
        &mut self,
        p: &ProgramPlan,
        kernel_btf: &mut Option<aya::Btf>,
    ) -> Result<(), LoadError> {
        let prog = self
            .ebpf
            .program_mut(&p.name)
            .ok_or_else(|| LoadError::MissingProgram {
                program: p.name.clone(),
            })?;
        let kind = p.section.split('/').next().unwrap_or_default();
        let load_err = |source: ProgramError| load_error(p, kind, source);
        let attach_err = |source: Box<dyn std::error::Error + Send + Sync>| LoadError::Attach {
            program: p.name.clone(),
            section: p.section.clone(),
            hint: attach_hint(kind),
            source,
        };
        let boxed = |e: ProgramError| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) };
        let mismatch = |prog: &Program| LoadError::KindMismatch {
            program: p.name.clone(),
            section: p.section.clone(),
            found: format!("{:?}", prog.prog_type()),
        };
        match (&p.attach, prog) {
            (Attach::TracePoint { category, name }, Program::TracePoint(tp)) => {
                tp.load().map_err(load_err)?;
                let id = tp
                    .attach(category, name)
                    .map_err(|e| attach_err(boxed(e)))?;
                self.tracepoint_links.push((p.name.clone(), id));
            }
            (Attach::RawTracePoint { name }, Program::RawTracePoint(tp)) => {
                tp.load().map_err(load_err)?;
                tp.attach(name).map_err(|e| attach_err(boxed(e)))?;
            }
            (Attach::BtfTracePoint { name }, Program::BtfTracePoint(tp)) => {
                tp.load(name, kernel_btf_cached(kernel_btf, &p.section)?)
                    .map_err(load_err)?;
                tp.attach().map_err(|e| attach_err(boxed(e)))?;
            }
            (Attach::KProbe { function, .. }, Program::KProbe(kp)) => {
                kp.load().map_err(load_err)?;
                kp.attach(function, 0).map_err(|e| attach_err(boxed(e)))?;
            }
            (Attach::FEntry { function }, Program::FEntry(f)) => {
                f.load(function, kernel_btf_cached(kernel_btf, &p.section)?)
                    .map_err(load_err)?;
                f.attach().map_err(|e| attach_err(boxed(e)))?;
            }
            (Attach::FExit { function }, Program::FExit(f)) => {
                f.load(function, kernel_btf_cached(kernel_btf, &p.section)?)
                    .map_err(load_err)?;
                f.attach().map_err(|e| attach_err(boxed(e)))?;
            }
            (Attach::Lsm { hook }, Program::Lsm(l)) => {
                l.load(hook, kernel_btf_cached(kernel_btf, &p.section)?)
                    .map_err(load_err)?;
                l.attach().map_err(|e| attach_err(boxed(e)))?;
            }
            (Attach::UProbe { .. }, Program::UProbe(u)) => {
                // Attached per root by `retarget`, once everything loaded.
                u.load().map_err(load_err)?;
            }
            (Attach::Iter { target }, Program::Iter(it)) => {
                // Loaded now so the verifier speaks at start; attached and
                // run on demand, once per snapshot (`run_iterator`).
                it.load(target, kernel_btf_cached(kernel_btf, &p.section)?)
                    .map_err(load_err)?;
            }
            (Attach::Socket, Program::SocketFilter(sf)) => {
                // Attached per network namespace by `retarget`, behind a
                // dispatcher that tells it the namespace.
                sf.load().map_err(load_err)?;
            }
            (Attach::PerfEvent(cfg), Program::PerfEvent(pe)) => {
                pe.load().map_err(load_err)?;
                let config = match cfg.event {
                    PerfEventKind::SoftwareCpuClock => {
                        PerfEventConfig::Software(SoftwareEvent::CpuClock)
                    }
                    PerfEventKind::SoftwareTaskClock => {
                        PerfEventConfig::Software(SoftwareEvent::TaskClock)
                    }
                    PerfEventKind::HardwareCpuCycles => {
                        PerfEventConfig::Hardware(HardwareEvent::CpuCycles)
                    }
                    PerfEventKind::HardwareInstructions => {
                        PerfEventConfig::Hardware(HardwareEvent::Instructions)
                    }
                };
                for cpu in online_cpus() {
                    pe.attach(
                        config,
                        PerfEventScope::AllProcessesOneCpu { cpu },
                        SamplePolicy::Frequency(cfg.frequency),
                        false,
                    )
                    .map_err(|e| attach_err(boxed(e)))?;
                }
            }
            (Attach::Tc { .. }, Program::SchedClassifier(p)) => {
                // Attached per interface by `retarget`, behind a
                // dispatcher.
                p.load().map_err(load_err)?;
            }
            (Attach::Disabled, _) => {}
            (_, prog) => return Err(mismatch(prog)),
        }
        Ok(())
    }

    /// Run iterator program `program` once and return everything it wrote.
    pub fn run_iterator(&mut self, program: &str) -> Result<Vec<u8>, LoadError> {
        let fail = |source: Box<dyn std::error::Error + Send + Sync>| LoadError::Iterator {
            program: program.to_owned(),
            source,
        };
        let Some(Program::Iter(it)) = self.ebpf.program_mut(program) else {
            return Err(LoadError::MissingProgram {
                program: program.to_owned(),
            });
        };
        let id = it.attach().map_err(|e| fail(Box::new(e)))?;
        let link = it.take_link(id).map_err(|e| fail(Box::new(e)))?;
        let mut file = link.into_file().map_err(|e| fail(Box::new(e)))?;
        let mut out = Vec::new();
        file.read_to_end(&mut out).map_err(|e| fail(Box::new(e)))?;
        Ok(out)
    }

    /// Take a hash map out of the object for periodic draining.
    pub fn hash_map(
        &mut self,
        map: &str,
        key_size: u32,
        value_size: u32,
    ) -> Result<HashDrain, LoadError> {
        let m = self.take_map(map)?;
        let data = match m {
            aya::maps::Map::HashMap(d) | aya::maps::Map::LruHashMap(d) => d,
            other => {
                return Err(LoadError::MapSize {
                    map: map.to_owned(),
                    message: format!(
                        "a map iterator needs a HASH or LRU_HASH map, not {}",
                        map_kind(&other)
                    ),
                });
            }
        };
        let info = data.info().map_err(|source| LoadError::Map {
            map: map.to_owned(),
            source,
        })?;
        if info.key_size() != key_size || info.value_size() != value_size {
            return Err(LoadError::MapSize {
                map: map.to_owned(),
                message: format!(
                    "key/value sizes in the kernel are {}/{} bytes, the BTF key and value structs are {key_size}/{value_size}",
                    info.key_size(),
                    info.value_size()
                ),
            });
        }
        Ok(HashDrain {
            map: map.to_owned(),
            data,
            key_size: key_size as usize,
            value_size: value_size as usize,
            batch: true,
        })
    }

    /// Take a `BPF_MAP_TYPE_STACK_TRACE` map (`ig_kstack`, `ig_ustack`) out
    /// of the object, to read stacks by id.
    pub fn stack_trace_map(&mut self, map: &str) -> Result<StackTraces, LoadError> {
        let m = self.take_map(map)?;
        let data = match m {
            aya::maps::Map::StackTraceMap(d) => d,
            other => {
                return Err(LoadError::MapSize {
                    map: map.to_owned(),
                    message: format!("expected a STACK_TRACE map, not {}", map_kind(&other)),
                });
            }
        };
        let info = data.info().map_err(|source| LoadError::Map {
            map: map.to_owned(),
            source,
        })?;
        Ok(StackTraces {
            data,
            depth: info.value_size() as usize / 8,
        })
    }

    /// Take the build id map of user stacks (`ig_build_id`: a HASH of
    /// stack id to `depth` `struct bpf_stack_build_id`s) out of the
    /// object; `Ok(None)` when the object has none (gadgets built before
    /// upstream added it).
    pub fn build_id_map(&mut self, map: &str, depth: usize) -> Result<Option<BuildIds>, LoadError> {
        let Some(m) = self.ebpf.take_map(map) else {
            return Ok(None);
        };
        let data = match m {
            aya::maps::Map::HashMap(d) | aya::maps::Map::LruHashMap(d) => d,
            other => {
                return Err(LoadError::MapSize {
                    map: map.to_owned(),
                    message: format!("expected a HASH map, not {}", map_kind(&other)),
                });
            }
        };
        let info = data.info().map_err(|source| LoadError::Map {
            map: map.to_owned(),
            source,
        })?;
        let want = depth * BUILD_ID_RECORD;
        if info.key_size() != 4 || info.value_size() as usize != want {
            return Err(LoadError::MapSize {
                map: map.to_owned(),
                message: format!(
                    "key/value sizes in the kernel are {}/{} bytes; a stack id and {depth} struct bpf_stack_build_id ({want} bytes) expected",
                    info.key_size(),
                    info.value_size()
                ),
            });
        }
        Ok(Some(BuildIds { data, depth }))
    }

    /// Take map `map` out of the object, or say that it is missing.
    fn take_map(&mut self, map: &str) -> Result<aya::maps::Map, LoadError> {
        self.ebpf
            .take_map(map)
            .ok_or_else(|| LoadError::MissingMap {
                map: map.to_owned(),
            })
    }

    /// Take a ring buffer out of the object for reading.
    pub fn ring_buffer(&mut self, map: &str) -> Result<RingBuffer, LoadError> {
        let aya::maps::Map::RingBuf(data) = self.take_map(map)? else {
            return Err(LoadError::NotRingBuf {
                map: map.to_owned(),
            });
        };
        let size = data
            .info()
            .map_err(|source| LoadError::Map {
                map: map.to_owned(),
                source,
            })?
            .max_entries();
        let ring =
            Ring::new(data.fd().as_fd().as_raw_fd(), size).map_err(|source| LoadError::Ring {
                map: map.to_owned(),
                source,
            })?;
        Ok(RingBuffer { ring, map: data })
    }

    /// Take HASH map `map` (u64 → u32) out of the gadget as a set the
    /// container filter writes on its own (`mntns_filter::KernelSet`);
    /// `Ok(None)` when the object has no such map. The programs keep
    /// their reference to the map.
    pub fn take_u64_set(&mut self, map: &str) -> Result<Option<U64Set>, LoadError> {
        let Some(m) = self.ebpf.take_map(map) else {
            return Ok(None);
        };
        let h =
            aya::maps::HashMap::<_, u64, u32>::try_from(m).map_err(|source| LoadError::Map {
                map: map.to_owned(),
                source,
            })?;
        Ok(Some(U64Set { map: h }))
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

/// A HASH map of u64 keys used as a set (`gadget_mntns_filter_map`).
pub struct U64Set {
    map: aya::maps::HashMap<aya::maps::MapData, u64, u32>,
}

impl crate::bpf::mntns_filter::KernelSet for U64Set {
    /// Insert the missing keys, then remove the others (a key that stays
    /// is never absent in between).
    fn replace(&mut self, ids: &[u64]) -> Result<(), String> {
        for k in ids {
            self.map.insert(k, 0, 0).map_err(|e| e.to_string())?;
        }
        let stale: Vec<u64> = self
            .map
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !ids.contains(k))
            .collect();
        for k in stale {
            self.map.remove(&k).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// A hash map drained at every interval: each call returns and removes
/// every entry, as `key || value` records.
pub struct HashDrain {
    map: String,
    data: MapData,
    key_size: usize,
    value_size: usize,
    /// Whether `BPF_MAP_LOOKUP_AND_DELETE_BATCH` works here; cleared at the
    /// first EINVAL/ENOTSUPP and the element-wise fallback is used instead.
    batch: bool,
}

/// `bpf(2)` commands (`include/uapi/linux/bpf.h`).
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_MAP_LOOKUP_AND_DELETE_ELEM: libc::c_long = 21;
const BPF_MAP_LOOKUP_AND_DELETE_BATCH: libc::c_long = 25;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;

/// Entries asked for per batch call (upstream uses 100 too).
const BATCH: u32 = 100;

#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value_or_next_key: u64,
    flags: u64,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<()> {
    // SAFETY: `attr` is a properly laid out bpf_attr prefix for `cmd`, and
    // every pointer in it refers to a live buffer of the size the kernel
    // expects for this map.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr),
            std::mem::size_of::<T>(),
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl HashDrain {
    /// Move every entry into `out` (appended as `key || value` records).
    /// Returns the number of entries.
    pub fn drain(&mut self, out: &mut Vec<u8>) -> Result<usize, LoadError> {
        let map = self.map.clone();
        let err = |source| LoadError::Drain { map, source };
        if self.batch {
            match self.drain_batch(out) {
                Ok(n) => return Ok(n),
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOTSUP | 524)) => {
                    // 524 is the kernel's ENOTSUPP: no batch ops for this map.
                    log::debug!(
                        "map {}: batch operations unavailable ({e}); draining element by element",
                        self.map
                    );
                    self.batch = false;
                }
                Err(e) => return Err(err(e)),
            }
        }
        self.drain_elements(out).map_err(err)
    }

    fn drain_batch(&mut self, out: &mut Vec<u8>) -> std::io::Result<usize> {
        let fd = self.data.fd().as_fd().as_raw_fd();
        let (ks, vs) = (self.key_size, self.value_size);
        let mut keys = vec![0u8; ks * BATCH as usize];
        let mut values = vec![0u8; vs * BATCH as usize];
        // Hash maps use a bucket index as the batch token; 8 bytes cover it.
        let mut token_in = [0u8; 8];
        let mut token_out = [0u8; 8];
        let mut total = 0;
        let mut first = true;
        loop {
            let mut attr = BatchAttr {
                in_batch: if first { 0 } else { token_in.as_ptr() as u64 },
                out_batch: token_out.as_mut_ptr() as u64,
                keys: keys.as_mut_ptr() as u64,
                values: values.as_mut_ptr() as u64,
                count: BATCH,
                map_fd: fd as u32,
                ..BatchAttr::default()
            };
            let res = bpf(BPF_MAP_LOOKUP_AND_DELETE_BATCH, &mut attr);
            let n = attr.count as usize;
            for i in 0..n {
                out.extend_from_slice(&keys[i * ks..(i + 1) * ks]);
                out.extend_from_slice(&values[i * vs..(i + 1) * vs]);
            }
            total += n;
            match res {
                Ok(()) => {}
                // ENOENT: no more entries; the count above was the last batch.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(total),
                Err(e) => return Err(e),
            }
            token_in = token_out;
            first = false;
        }
    }

    fn drain_elements(&mut self, out: &mut Vec<u8>) -> std::io::Result<usize> {
        let fd = self.data.fd().as_fd().as_raw_fd() as u32;
        let (ks, vs) = (self.key_size, self.value_size);
        // Collect the keys first: deleting while walking restarts the walk.
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut next = vec![0u8; ks];
        let mut prev: Option<Vec<u8>> = None;
        loop {
            let mut attr = ElemAttr {
                map_fd: fd,
                key: prev.as_ref().map_or(0, |k| k.as_ptr() as u64),
                value_or_next_key: next.as_mut_ptr() as u64,
                ..ElemAttr::default()
            };
            match bpf(BPF_MAP_GET_NEXT_KEY, &mut attr) {
                Ok(()) => {
                    keys.push(next.clone());
                    prev = Some(next.clone());
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
                Err(e) => return Err(e),
            }
        }
        let mut value = vec![0u8; vs];
        let mut n = 0;
        for k in &keys {
            let mut attr = ElemAttr {
                map_fd: fd,
                key: k.as_ptr() as u64,
                value_or_next_key: value.as_mut_ptr() as u64,
                ..ElemAttr::default()
            };
            let res = match bpf(BPF_MAP_LOOKUP_AND_DELETE_ELEM, &mut attr) {
                // Older kernels: look up, then delete.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    bpf(BPF_MAP_LOOKUP_ELEM, &mut attr).and_then(|()| {
                        let mut del = ElemAttr {
                            map_fd: fd,
                            key: k.as_ptr() as u64,
                            ..ElemAttr::default()
                        };
                        bpf(BPF_MAP_DELETE_ELEM, &mut del)
                    })
                }
                r => r,
            };
            match res {
                Ok(()) => {
                    out.extend_from_slice(k);
                    out.extend_from_slice(&value);
                    n += 1;
                }
                // Deleted by the program in the meantime.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }
}

/// A stack trace map: stacks of return addresses by the id
/// `bpf_get_stackid()` gave the program.
pub struct StackTraces {
    data: MapData,
    /// Addresses per stack (`value_size / 8`).
    depth: usize,
}

impl StackTraces {
    /// Read the addresses of stack `id` into `out` (reused), innermost
    /// first, without the zero padding after the last frame. `false` (and
    /// `out` empty) when the map has no such stack (deleted, or never
    /// stored: ids of 2^31 and above are errors).
    pub fn lookup_into(&self, id: u32, out: &mut Vec<u64>) -> bool {
        out.clear();
        out.resize(self.depth, 0);
        let mut attr = ElemAttr {
            map_fd: self.data.fd().as_fd().as_raw_fd() as u32,
            key: std::ptr::from_ref(&id) as u64,
            value_or_next_key: out.as_mut_ptr() as u64,
            ..ElemAttr::default()
        };
        if bpf(BPF_MAP_LOOKUP_ELEM, &mut attr).is_err() {
            out.clear();
            return false;
        }
        let n = out.iter().position(|a| *a == 0).unwrap_or(out.len());
        out.truncate(n);
        true
    }

    /// Frames a stack holds at most.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Free slot `id` for other stacks. A missing id is not an error.
    pub fn delete(&self, id: u32) {
        let mut attr = ElemAttr {
            map_fd: self.data.fd().as_fd().as_raw_fd() as u32,
            key: std::ptr::from_ref(&id) as u64,
            ..ElemAttr::default()
        };
        let _ = bpf(BPF_MAP_DELETE_ELEM, &mut attr);
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The dispatchers (`dispatch.bpf.c`), built by `build.rs`.
static DISPATCH: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/dispatch.bpf.o"));

/// Which dispatcher.
#[derive(Clone, Copy)]
enum DispatchKind {
    Socket,
    Tc,
}

impl DispatchKind {
    fn program(self) -> &'static str {
        match self {
            Self::Socket => "ig_sock_disp",
            Self::Tc => "ig_tc_disp",
        }
    }
}

/// A dispatcher loaded for network namespace `netns`, its tail call set to
/// the gadget's program `target`; not attached.
fn load_dispatcher(
    loader: &mut EbpfLoader<'static>,
    netns: u64,
    kind: DispatchKind,
    target: &aya::programs::ProgramFd,
) -> Result<Ebpf, Box<dyn std::error::Error + Send + Sync>> {
    // The namespace goes into `current_netns`, the object's only
    // `.rodata` variable, in the bytes: a loader's globals must outlive
    // it, and this one lives as long as the gadget.
    let object = with_rodata_u32(DISPATCH, u32::try_from(netns).unwrap_or(0))
        .ok_or("the dispatcher object has no 4-byte .rodata")?;
    let mut d = loader.load(&object)?;
    let map = d
        .map_mut("ig_tail_call")
        .ok_or("the dispatcher has no ig_tail_call")?;
    let mut calls = aya::maps::ProgramArray::try_from(map)?;
    calls.set(0, target, 0)?;
    match (kind, d.program_mut(kind.program())) {
        (DispatchKind::Socket, Some(Program::SocketFilter(p))) => p.load()?,
        (DispatchKind::Tc, Some(Program::SchedClassifier(p))) => p.load()?,
        _ => return Err(format!("the dispatcher has no program {}", kind.program()).into()),
    }
    Ok(d)
}

/// `object` with its 4-byte `.rodata` section set to `v`.
fn with_rodata_u32(object: &[u8], v: u32) -> Option<Vec<u8>> {
    use object::{Object as _, ObjectSection as _};
    let file = object::File::parse(object).ok()?;
    let s = file.section_by_name(".rodata")?;
    let (at, len) = s.file_range()?;
    if len != 4 {
        return None;
    }
    let mut out = object.to_vec();
    out[at as usize..at as usize + 4].copy_from_slice(&v.to_ne_bytes());
    Some(out)
}

/// The inode of our network namespace.
fn host_netns() -> std::io::Result<u64> {
    let l = std::fs::read_link("/proc/self/ns/net")?;
    l.to_str()
        .and_then(crate::containers::parse_ns_link)
        .ok_or_else(|| std::io::Error::other(format!("unexpected {}", l.display())))
}

/// A packet socket in the network namespace of `pid` (ours: `None`),
/// made on a thread that enters it: a socket stays in the namespace it was
/// made in.
fn packet_socket_in(pid: Option<u32>) -> std::io::Result<OwnedFd> {
    let Some(pid) = pid else {
        return packet_socket();
    };
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("ig-netns".into())
            .spawn_scoped(s, || {
                // SAFETY: setns(2) of this thread only, with a namespace fd.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                packet_socket()
            })?
            .join()
            .unwrap_or_else(|_| {
                Err(std::io::Error::other(
                    "the thread entering the namespace panicked",
                ))
            })
    })
}

fn tc_error(program: &str, e: BoxError) -> LoadError {
    LoadError::Attach {
        program: program.to_owned(),
        section: "classifier".into(),
        hint: ": TC programs attach through TCX links (Linux 6.6 or later); ig does not use \
               netlink filters, which would outlive it if it were killed"
            .into(),
        source: e,
    }
}

fn socket_error(program: &str, e: Box<dyn std::error::Error + Send + Sync>) -> LoadError {
    LoadError::Attach {
        program: program.to_owned(),
        section: "socket".into(),
        hint: String::new(),
        source: e,
    }
}

/// The uprobe a plan entry is, if it is one.
fn probe_of(p: &ProgramPlan) -> Option<Probe> {
    match &p.attach {
        Attach::UProbe { target, symbol, .. } => Some(Probe {
            program: p.name.clone(),
            target: uprobes::Target::parse(target)?,
            symbol: symbol.clone(),
        }),
        _ => None,
    }
}

/// Attaches uprobes of the gadget's object for `UprobeSet`.
struct UprobeAttacher<'a> {
    ebpf: &'a mut Ebpf,
}

impl uprobes::Attacher for UprobeAttacher<'_> {
    type Link = UProbeLinkId;

    fn attach(&mut self, program: &str, path: &Path, offset: u64) -> Result<UProbeLinkId, String> {
        let Some(Program::UProbe(u)) = self.ebpf.program_mut(program) else {
            return Err(format!("program {program} is not a loaded uprobe"));
        };
        u.attach(
            UProbeAttachLocation::AbsoluteOffset(offset),
            path,
            UProbeScope::AllProcesses,
        )
        .map_err(|e| super::error_chain(&e))
    }

    fn detach(&mut self, program: &str, link: UProbeLinkId) {
        if let Some(Program::UProbe(u)) = self.ebpf.program_mut(program)
            && let Err(e) = u.detach(link)
        {
            log::debug!("detaching uprobe {program}: {e}");
        }
    }
}

/// Size of `struct bpf_stack_build_id` (UAPI): `s32 status`, 20 bytes of
/// build id, then the `u64` offset or ip at 24.
pub const BUILD_ID_RECORD: usize = 32;

/// The build ids of user stacks, by stack id (`ig_build_id`, filled when
/// the gadget runs with `--collect-build-id`).
pub struct BuildIds {
    data: MapData,
    depth: usize,
}

impl BuildIds {
    /// Read the records of stack `id` into `out` (reused): `depth` times
    /// [`BUILD_ID_RECORD`] bytes. `false` (and `out` empty) when there are
    /// none (build ids not collected for that stack).
    pub fn lookup_into(&self, id: u32, out: &mut Vec<u8>) -> bool {
        out.clear();
        out.resize(self.depth * BUILD_ID_RECORD, 0);
        let mut attr = ElemAttr {
            map_fd: self.data.fd().as_fd().as_raw_fd() as u32,
            key: std::ptr::from_ref(&id) as u64,
            value_or_next_key: out.as_mut_ptr() as u64,
            ..ElemAttr::default()
        };
        if bpf(BPF_MAP_LOOKUP_ELEM, &mut attr).is_err() {
            out.clear();
            return false;
        }
        true
    }

    /// Free the records of stack `id`. A missing id is not an error.
    pub fn delete(&self, id: u32) {
        let mut attr = ElemAttr {
            map_fd: self.data.fd().as_fd().as_raw_fd() as u32,
            key: std::ptr::from_ref(&id) as u64,
            ..ElemAttr::default()
        };
        let _ = bpf(BPF_MAP_DELETE_ELEM, &mut attr);
    }
}

/// What a WASM guest may reach of a loaded gadget (upstream's `getMap`):
/// a descriptor of every map still in the object, duplicated so the
/// guest's handles outlive neither more nor less than they should (see
/// `bpf::maps`). Maps already taken out (ring buffers, drained hash maps,
/// stack maps) are not listed.
impl LoadedGadget {
    /// Duplicated descriptors of the maps still in the object, by name.
    pub fn share_maps(&self) -> Vec<(String, OwnedFd)> {
        self.ebpf
            .maps()
            .filter_map(|(name, m)| {
                let fd = map_data(m).fd().as_fd().try_clone_to_owned().ok()?;
                Some((name.to_owned(), fd))
            })
            .collect()
    }
}

/// The data of any map (aya has no accessor across kinds).
fn map_data(m: &aya::maps::Map) -> &MapData {
    use aya::maps::Map as M;
    match m {
        M::Array(d)
        | M::ArrayOfMaps(d)
        | M::BloomFilter(d)
        | M::CgroupArray(d)
        | M::CgroupStorage(d)
        | M::CgrpStorage(d)
        | M::CpuMap(d)
        | M::DevMap(d)
        | M::DevMapHash(d)
        | M::HashMap(d)
        | M::HashOfMaps(d)
        | M::InodeStorage(d)
        | M::LpmTrie(d)
        | M::LruHashMap(d)
        | M::PerCpuArray(d)
        | M::PerCpuCgroupStorage(d)
        | M::PerCpuHashMap(d)
        | M::PerCpuLruHashMap(d)
        | M::PerfEventArray(d)
        | M::ProgramArray(d)
        | M::Queue(d)
        | M::ReusePortSockArray(d)
        | M::RingBuf(d)
        | M::SockHash(d)
        | M::SockMap(d)
        | M::SkStorage(d)
        | M::Stack(d)
        | M::StackTraceMap(d)
        | M::Unsupported(d)
        | M::XskMap(d) => d,
    }
}

/// The name of a map's kind, for messages (`Debug` of the variant).
fn map_kind(m: &aya::maps::Map) -> String {
    let d = format!("{m:?}");
    d.split('(').next().unwrap_or(&d).to_owned()
}

/// A raw packet socket on every interface of the host network namespace,
/// for socket filters. Non-blocking, and never read: the filters return 0,
/// so nothing queues on it.
fn packet_socket() -> std::io::Result<OwnedFd> {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            i32::from(proto),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// CPUs to open per-CPU perf events on (`/sys/devices/system/cpu/online`,
/// e.g. `0-3,6`).
pub(super) fn online_cpus() -> Vec<u32> {
    let text =
        std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_else(|_| "0".into());
    parse_cpu_list(&text)
}

pub(super) fn parse_cpu_list(text: &str) -> Vec<u32> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    cpus.extend(a..=b.min(a.saturating_add(4096)));
                }
            }
            None => cpus.extend(part.parse::<u32>().ok()),
        }
    }
    cpus
}

/// Longest one [`RingBuffer::drain`] keeps going while samples keep coming.
pub const DRAIN_SLICE: std::time::Duration = std::time::Duration::from_millis(20);

/// A ring buffer we read samples from.
pub struct RingBuffer {
    /// First: its mappings go before the map's descriptor closes.
    ring: Ring,
    map: MapData,
}

impl RingBuffer {
    /// Hand pending samples to `f`, without blocking. Returns how many.
    /// Stops after about [`DRAIN_SLICE`] even if more are pending: a
    /// producer as fast as we are would otherwise keep us here forever,
    /// away from signals and flushes. The fd stays readable, so the event
    /// loop comes straight back. The clock is read every 1024 samples
    /// only, so `f` returns `false` to stop at once (it was slow).
    pub fn drain(&mut self, mut f: impl FnMut(&[u8]) -> bool) -> usize {
        let start = std::time::Instant::now();
        let mut n = 0usize;
        self.ring.read(|sample| {
            let more = f(sample);
            n += 1;
            more && !(n.is_multiple_of(1024) && start.elapsed() >= DRAIN_SLICE)
        })
    }

    /// The ring buffer's descriptor, to poll.
    pub fn fd(&self) -> RawFd {
        self.map.fd().as_fd().as_raw_fd()
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

/// The error for a program the kernel would not load: the verifier's log
/// when there is one, else the errno with a hint on the usual cause.
fn load_error(p: &ProgramPlan, kind: &str, source: ProgramError) -> LoadError {
    match source {
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
    }
}

/// `map a is` / `maps a, b are`, for the warning about missing pins.
fn plural_maps(maps: &[String]) -> String {
    match maps {
        [one] => format!("map {one} is"),
        many => format!("maps {} are", many.join(", ")),
    }
}

/// Where aya (as libbpf) looks for maps pinned by name.
const PIN_DIR: &str = "/sys/fs/bpf";

/// Where the running kernel exposes its BTF.
const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The bytes of the kernel's BTF file: mapped read-only where the kernel
/// allows it (Linux 6.16 and later map `/sys/kernel/btf/vmlinux`), read
/// otherwise. Reading goes one page per system call (sysfs), ~4.5 ms for
/// its 6 MB; mapping takes a tenth of a millisecond, pages touched included.
enum KernelBtfBytes {
    Mapped {
        at: std::ptr::NonNull<u8>,
        len: usize,
    },
    Read(Vec<u8>),
}

impl KernelBtfBytes {
    fn open() -> std::io::Result<Self> {
        use std::os::fd::AsRawFd as _;
        let f = std::fs::File::open(KERNEL_BTF)?;
        let len = usize::try_from(f.metadata()?.len()).unwrap_or(0);
        if len > 0 {
            // SAFETY: a fresh private read-only mapping of a file we hold
            // open; the kernel's BTF never changes while the kernel runs,
            // and the mapping is unmapped only by `drop`.
            let at = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE,
                    f.as_raw_fd(),
                    0,
                )
            };
            if at != libc::MAP_FAILED
                && let Some(at) = std::ptr::NonNull::new(at.cast::<u8>())
            {
                return Ok(Self::Mapped { at, len });
            }
        }
        std::fs::read(KERNEL_BTF).map(Self::Read)
    }
}

impl std::ops::Deref for KernelBtfBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            // SAFETY: `len` readable bytes at `at`, mapped until `drop`.
            Self::Mapped { at, len } => unsafe { std::slice::from_raw_parts(at.as_ptr(), *len) },
            Self::Read(v) => v,
        }
    }
}

impl Drop for KernelBtfBytes {
    fn drop(&mut self) {
        if let Self::Mapped { at, len } = self {
            // SAFETY: the mapping `open` made, unmapped once; no slice of
            // it outlives `self` (`deref` borrows `self`).
            unsafe { libc::munmap(at.as_ptr().cast(), *len) };
        }
    }
}

/// The kernel's whole BTF parsed by aya, from [`KernelBtfBytes`] (aya's
/// `Btf::from_sys_fs` reads the file a page per system call).
fn aya_kernel_btf() -> Result<aya::Btf, Box<dyn std::error::Error + Send + Sync>> {
    let bytes = KernelBtfBytes::open()?;
    Ok(aya::Btf::parse(&bytes, aya::Endianness::default())?)
}

/// The kernel's BTF as `bpf::compat` reads it (aya parses its own copy):
/// read at most once per load, and only for a step that needs it.
#[derive(Default)]
struct CompatKernelBtf(Option<crate::btf::Btf>);

impl CompatKernelBtf {
    fn get(&mut self, needed_for: &'static str) -> Result<&crate::btf::Btf, LoadError> {
        if self.0.is_none() {
            let fail =
                |source: Box<dyn std::error::Error + Send + Sync>| LoadError::KernelBtfFile {
                    path: KERNEL_BTF,
                    needed_for,
                    source,
                };
            let raw = KernelBtfBytes::open().map_err(|e| fail(Box::new(e)))?;
            self.0 = Some(crate::btf::Btf::parse(&raw).map_err(|e| fail(Box::new(e)))?);
        }
        Ok(self.0.as_ref().expect("set just above"))
    }
}

/// `object` with the CO-RE relocations aya cannot compute already done
/// against the running kernel (`compat::resolve_core`). The kernel's BTF
/// is read and parsed only for objects that have such relocations.
fn with_core_resolved<'a>(
    object: &'a [u8],
    socket_value_btf: Option<&crate::btf::Btf>,
    kernel: &mut CompatKernelBtf,
) -> Result<Cow<'a, [u8]>, LoadError> {
    if !super::compat::needs_kernel_btf(object) {
        return Ok(Cow::Borrowed(object));
    }
    let kernel = kernel.get("the object's CO-RE relocations")?;
    let resolved =
        super::compat::resolve_core(object, kernel, socket_value_btf).map_err(Box::new)?;
    Ok(Cow::Owned(resolved))
}

/// `object` with its `.kconfig` externs (`LINUX_KERNEL_VERSION`,
/// `CONFIG_*`) given the running kernel's values (`compat::resolve_kconfig`,
/// which says how). Only what they need is read: `uname`, the kernel's
/// configuration, its BTF.
fn with_kconfig_resolved<'a>(
    object: Cow<'a, [u8]>,
    kernel: &mut CompatKernelBtf,
) -> Result<Cow<'a, [u8]>, LoadError> {
    let Some(needs) = super::compat::kconfig_needs(&object).map_err(Box::new)? else {
        return Ok(object);
    };
    let uname = uname();
    let version_code = match &uname {
        Ok(_) if !needs.version => Err("it was not read".to_owned()),
        Ok((release, version)) => {
            let signature = std::fs::read_to_string(UBUNTU_VERSION_SIGNATURE).ok();
            super::compat::kernel_version_code(release, version, signature.as_deref())
                .ok_or_else(|| format!("the kernel's release {release} is not a version"))
        }
        Err(e) => Err(format!("uname: {e}")),
    };
    let config = match &uname {
        Ok((release, _)) if needs.config => read_kernel_config(release),
        Ok(_) => Err("it was not read".to_owned()),
        Err(e) => Err(format!("uname: {e}")),
    };
    let btf = if needs.kernel_btf {
        Some(kernel.get("the object's LINUX_HAS_* externs")?)
    } else {
        None
    };
    let facts = super::compat::KernelFacts {
        version_code: version_code.as_ref().copied().map_err(String::as_str),
        config: config
            .as_ref()
            .map(|(path, text)| (path.as_str(), text.as_str()))
            .map_err(String::as_str),
        btf,
    };
    let resolved = super::compat::resolve_kconfig(&object, &facts).map_err(Box::new)?;
    Ok(Cow::Owned(resolved))
}

/// Where Ubuntu says which upstream release its kernel is (libbpf reads it
/// for `LINUX_KERNEL_VERSION`).
const UBUNTU_VERSION_SIGNATURE: &str = "/proc/version_signature";

/// A kernel configuration larger than this is not one (they are ~300 KB).
const MAX_KERNEL_CONFIG: u64 = 16 << 20;

/// `uname -r` and `uname -v`.
fn uname() -> std::io::Result<(String, String)> {
    // SAFETY: uname(2) fills the struct it is given; all zeroes is a valid
    // utsname.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a utsname we own.
    if unsafe { libc::uname(&raw mut u) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Ok((field(&u.release), field(&u.version)))
}

/// The running kernel's build configuration and the file it came from:
/// `/boot/config-RELEASE`, else `/proc/config.gz` (where libbpf and
/// cilium/ebpf look, in that order).
fn read_kernel_config(release: &str) -> Result<(String, String), String> {
    let boot = format!("/boot/config-{release}");
    for path in [boot.as_str(), "/proc/config.gz"] {
        if let Some(text) = read_config_file(Path::new(path))? {
            return Ok((path.to_owned(), text));
        }
    }
    Err(format!(
        "neither {boot} nor /proc/config.gz exists (the latter needs CONFIG_IKCONFIG_PROC, or the configs module)"
    ))
}

/// The text of kernel configuration file `path`, decompressed if gzipped;
/// `None` if there is no such file.
fn read_config_file(path: &Path) -> Result<Option<String>, String> {
    let raw = match std::fs::read(path) {
        Ok(raw) => raw,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("reading {} failed: {e}", path.display())),
    };
    let text = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .take(MAX_KERNEL_CONFIG)
            .read_to_end(&mut out)
            .map_err(|e| format!("decompressing {} failed: {e}", path.display()))?;
        out
    } else {
        raw
    };
    Ok(Some(String::from_utf8_lossy(&text).into_owned()))
}

/// An `EbpfLoader` being made on another thread, for the next load that
/// is handed this value ([`LoadSpec::prefetch`]).
///
/// Making one costs little when [`new_loader`] can keep aya from parsing
/// the kernel's BTF, and 10-40 ms of aya's parse when it cannot: started
/// first thing, either overlaps reading the image, building the operators
/// and scanning /proc for containers. One prefetch serves one load: the
/// first that takes it. A value, never process-wide state: runs that are
/// not handed one are not affected by it.
#[derive(Clone, Default)]
pub struct LoaderPrefetch(
    std::sync::Arc<std::sync::Mutex<Option<std::thread::JoinHandle<NewLoader>>>>,
);

impl std::fmt::Debug for LoaderPrefetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoaderPrefetch")
    }
}

impl LoaderPrefetch {
    /// Start making a loader now, on a thread of its own (which inherits
    /// the caller's signal mask). If no thread can be had, the load makes
    /// its own.
    pub fn start() -> Self {
        let handle = std::thread::Builder::new()
            .name("ig-loader".into())
            .spawn(make_loader_on_this_thread)
            .ok();
        Self(std::sync::Arc::new(std::sync::Mutex::new(handle)))
    }

    /// The loader, if no load took it yet.
    fn take(&self) -> Option<NewLoader> {
        let handle = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        handle.and_then(|h| h.join().ok())
    }
}

/// An aya loader, and whether it holds the kernel's whole BTF (aya parsed
/// it: the fallback of [`new_loader`]).
struct NewLoader {
    loader: EbpfLoader<'static>,
    kernel_btf: bool,
}

/// An `EbpfLoader`, without aya's parse of the kernel's BTF when this
/// process may make a mount namespace.
///
/// Why: `EbpfLoader::new()` always parses `/sys/kernel/btf/vmlinux` (~6
/// MB; 10-40 ms, the largest user-space part of `ig run`'s start-up) and
/// aya has no other constructor; yet a loader needs no kernel BTF but the
/// one it relocates against, which [`relocation_btf`] gives it (a subset,
/// or the whole when the object needs it). How: the loader is made on a
/// thread of its own that enters a new mount namespace (`unshare` of
/// `CLONE_NEWNS` applies to the calling thread only) where
/// `/sys/kernel/btf` is an empty tmpfs, so aya finds no file; the
/// namespace ends with the thread. Without the privilege for it (no
/// CAP_SYS_ADMIN) aya parses as before.
fn new_loader() -> NewLoader {
    std::thread::Builder::new()
        .name("ig-loader".into())
        .spawn(make_loader_on_this_thread)
        .ok()
        .and_then(|h| h.join().ok())
        .unwrap_or_else(|| NewLoader {
            loader: EbpfLoader::new(),
            kernel_btf: true,
        })
}

/// [`new_loader`]'s work, on the thread it runs on (which must be one of
/// its own: its mount namespace changes).
fn make_loader_on_this_thread() -> NewLoader {
    let hidden = hide_kernel_btf();
    if let Err(e) = &hidden {
        log::debug!(
            "aya reads the kernel's BTF itself (the mount namespace that hides it from aya could not be made: {e})"
        );
    }
    NewLoader {
        loader: EbpfLoader::new(),
        kernel_btf: hidden.is_err(),
    }
}

/// Make `/sys/kernel/btf` an empty directory for this thread only: a mount
/// namespace of its own, private (nothing propagates to the host's), with
/// a read-only tmpfs there.
fn hide_kernel_btf() -> std::io::Result<()> {
    let fail = |what: &str| {
        let e = std::io::Error::last_os_error();
        std::io::Error::new(e.kind(), format!("{what}: {e}"))
    };
    // SAFETY: unshare(2) of the calling thread's mount namespace (and,
    // implied, its filesystem attributes); no memory is involved.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(fail("unshare(CLONE_NEWNS)"));
    }
    // SAFETY: mount(2) with NUL-terminated strings and null data.
    if unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    } != 0
    {
        return Err(fail("making / private"));
    }
    // SAFETY: as above.
    if unsafe {
        libc::mount(
            c"none".as_ptr(),
            c"/sys/kernel/btf".as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        )
    } != 0
    {
        return Err(fail("a tmpfs on /sys/kernel/btf"));
    }
    Ok(())
}

/// The kernel BTF aya relocates `object` against, if the loader's own will
/// not do: the kernel's BTF cut down to what the object's CO-RE relocations
/// look up (`btf::subset`: aya's search of the whole BTF for each
/// relocation's candidates is 10-18 ms of `ig run`'s start-up, against the
/// subset well under a millisecond), or the whole when the object needs it
/// (`compat::core_roots`) or the subset cannot be made (said at debug
/// level) and the loader has no BTF of its own (`loader_has_btf`). `None`
/// when the object has no relocations, or the loader's own is the whole
/// and no subset could be made.
fn relocation_btf(object: &[u8], loader_has_btf: bool) -> Option<aya::Btf> {
    let whole = || {
        if loader_has_btf {
            return None;
        }
        aya_kernel_btf()
            .map_err(|e| log::debug!("{KERNEL_BTF}: {e}"))
            .ok()
    };
    let Some(roots) = super::compat::core_roots(object) else {
        return whole();
    };
    if roots.is_empty() {
        return None;
    }
    let subset = KernelBtfBytes::open()
        .map_err(|e| e.to_string())
        .and_then(|kernel| {
            let roots: Vec<&str> = roots.iter().map(String::as_str).collect();
            crate::btf::subset::kernel_subset(&kernel, &roots).map_err(|e| e.to_string())
        })
        .and_then(|subset| {
            aya::Btf::parse(&subset, aya::Endianness::default()).map_err(|e| e.to_string())
        });
    match subset {
        Ok(b) => Some(b),
        Err(e) => {
            log::debug!("no subset of {KERNEL_BTF} for aya ({e}): relocating against the whole");
            whole()
        }
    }
}

/// The kernel's BTF, read once per load and only when a program needs it.
fn kernel_btf_cached<'a>(
    cache: &'a mut Option<aya::Btf>,
    section: &str,
) -> Result<&'a aya::Btf, LoadError> {
    if cache.is_none() {
        // aya says why the file cannot be read, when it cannot.
        let b = match KernelBtfBytes::open() {
            Ok(bytes) => aya::Btf::parse(&bytes, aya::Endianness::default()),
            Err(_) => aya::Btf::from_sys_fs(),
        }
        .map_err(|source| LoadError::KernelBtf {
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
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,6\n"), [0, 1, 2, 3, 6]);
        assert_eq!(parse_cpu_list("0"), [0]);
        assert_eq!(parse_cpu_list("x,1-"), Vec::<u32>::new());
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
    fn kernel_configurations_are_read_plain_or_gzipped() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let text = "CONFIG_HZ=250\n# CONFIG_KPROBES is not set\n";
        let plain = dir.path().join("config-plain");
        std::fs::write(&plain, text).unwrap();
        let gz = dir.path().join("config.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(text.as_bytes()).unwrap();
        let packed = enc.finish().unwrap();
        std::fs::write(&gz, &packed).unwrap();
        assert_eq!(read_config_file(&plain).unwrap().as_deref(), Some(text));
        assert_eq!(read_config_file(&gz).unwrap().as_deref(), Some(text));
        assert_eq!(read_config_file(&dir.path().join("none")).unwrap(), None);
        let cut = dir.path().join("cut.gz");
        std::fs::write(&cut, &packed[..packed.len() / 2]).unwrap();
        let err = read_config_file(&cut).unwrap_err();
        assert!(
            err.starts_with("decompressing ") && err.contains("cut.gz"),
            "{err}"
        );
    }

    #[test]
    fn hints_name_the_kernel_reason() {
        assert!(load_hint("fentry").contains("lockdown"));
        assert!(load_hint("tracepoint").is_empty());
    }
}
