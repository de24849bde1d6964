//! The eBPF image operator (priority 0): turns a gadget object into data
//! sources and feeds their events into the chain.
//!
//! New (no kernel): parse the object, find the contract markers, plan how
//! every program attaches, list the gadget's parameters. Instantiate (no
//! kernel): one schema per data source from BTF plus `gadget.yaml`. Start
//! (kernel): load and attach through `bpf::loader`. While running it is the
//! chain's [`Source`]:
//!
//! - tracers (`GADGET_TRACER`): each drain copies every pending sample of
//!   its ring buffer (or perf event array: upstream's tcpdump) into a
//!   reused [`Event`] and dispatches it, the bytes after the struct into
//!   the field `ebpf.rest.name` names; each tick reads the
//!   `<map>_lost_samples` counters (the perf rings' lost records);
//! - snapshotters (`GADGET_ITER`): the first drain runs the iterator
//!   programs once and dispatches their records as one array;
//! - toppers (`GADGET_MAPITER`): every `--map-fetch-interval` the hash map is
//!   drained (lookup-and-delete in batches) into one array, up to
//!   `--map-fetch-count` times. An interval of 0 means no periodic fetch,
//!   as upstream: the map is drained once when the run stops (or once
//!   right away with `--map-fetch-count 1`); the advise gadgets set it so
//!   through `paramDefaults`.
//!
//! Start also starts the socket enricher (`bpf::socket_enricher`) first
//! for an object that declares `gadget_sockets`, and attaches what follows
//! containers (uprobes, socket filters, TC) to the set `bpf::targets`
//! publishes; each tick reattaches when that set changed and looks for
//! the containers' interfaces again every second.
//!
//! Stop drops every kernel object.
//!
//! With a WASM guest (`EbpfOptions::shared`), start first applies the
//! configuration the guest set (`programs.<name>.attach_to`, see
//! `bpf::shared`) to the program plan, and publishes the loaded maps for
//! the guest's `getMap`; stop withdraws them.
//!
//! Reads: the object's BTF and `.rodata`, `gadget.yaml` `datasources` and
//! `programs`. Writes: one data source per tracer, snapshotter and topper.

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use crate::bpf::contract::{Contract, PERF_EVENT_ARRAY, map_key_value, map_max_entries, map_type};
use crate::bpf::loader::{
    DRAIN_SLICE, HashDrain, LoadError, LoadSpec, LoadedGadget, LostCounter, RingBuffer,
};
use crate::bpf::maps::MapFd;
use crate::bpf::mntns_filter::{self, MntnsFilter};
use crate::bpf::object::ObjectInfo;
use crate::bpf::params::EbpfParam;
use crate::bpf::perf::{PerfReader, Read as PerfRead};
use crate::bpf::programs::{ProgramPlan, plan};
use crate::bpf::schema::{schema_from_btf, schema_from_structs};
use crate::bpf::shared::{SharedGadget, apply_config};
use crate::bpf::socket_enricher::{self, SocketEnricher};
use crate::bpf::targets::{TargetSet, Targets};
use crate::bpf::{Inspected, inspect};
use crate::btf::Btf;
use crate::datasource::{Event, SchemaBuilder, SourceKind};
use crate::metadata::GadgetMetadata;
use crate::params::{ParamSpec, ParamType, ParamValue, ParamValues};
use crate::pipeline::{
    Dispatch, Instance, Notice, Operator, OperatorError, Priority, Setup, Source, SourceId,
    priority,
};

mod stacks;

const NAME: &str = "ebpf";

/// The `.rodata` variable of `buffer.h` that sets how many pending bytes make
/// the kernel wake the reader (0: every event may wake it).
pub const WAKEUP_THRESHOLD_VAR: &str = "gadget_ringbuf_wakeup_threshold";

const FETCH_INTERVAL: &str = "operator.oci.ebpf.map-fetch-interval";
const FETCH_COUNT: &str = "operator.oci.ebpf.map-fetch-count";

/// Settings of the eBPF operator.
#[derive(Clone, Debug, Default)]
pub struct EbpfOptions {
    /// Bytes pending in a ring buffer before the kernel wakes the reader;
    /// `None` for the kernel's default (wake when the reader caught up).
    pub wakeup_threshold: Option<u64>,
    /// Ring buffer size override in bytes (a power of two, multiple of the
    /// page size), applied to every tracer map.
    pub ringbuf_size: Option<u32>,
    /// The container filter shared with the local manager: when it is
    /// enabled, `gadget_filter_by_mntns` is set before load and
    /// `gadget_mntns_filter_map` follows its set (see `bpf::mntns_filter`).
    pub mntns_filter: Option<MntnsFilter>,
    /// What a WASM guest of the image shares with us: its configuration
    /// before load, our maps after (see `bpf::shared`).
    pub shared: Option<SharedGadget>,
    /// A loader made ahead of time (`bpf::loader::LoaderPrefetch`).
    pub prefetch: Option<crate::bpf::loader::LoaderPrefetch>,
    /// The host and containers the local manager publishes, for programs
    /// that follow containers (uprobes); `None`: the host only.
    pub targets: Option<Targets>,
}

/// The image's eBPF object as an operator: its data sources, parameters, load
/// and ring buffers.
pub struct EbpfOperator {
    object: Vec<u8>,
    info: ObjectInfo,
    btf: Btf,
    contract: Contract,
    plan: Vec<ProgramPlan>,
    metadata: GadgetMetadata,
    options: EbpfOptions,
    params: Vec<EbpfParam>,
    /// `.rodata` values chosen by the user, from `apply_params`.
    globals: Vec<(String, Vec<u8>)>,
    fetch_interval: Duration,
    fetch_count: u64,
    /// The object declares `gadget_sockets`: the socket enricher runs,
    /// with these optional fields.
    enricher: Option<socket_enricher::Fields>,
    /// `--iface` (TC programs).
    iface: Option<String>,
    /// The object's `gadget_pf_*` hooks (`--pf`, `--pf-NAME`).
    pf_functions: Vec<String>,
    /// Compiled filters to put in front of them: (function, eBPF code).
    filters: Vec<(String, Vec<[u8; 8]>)>,
}

/// `--iface`, upstream's name.
const IFACE: &str = "operator.oci.ebpf.iface";

/// Why the eBPF operator cannot make the gadget's data sources.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    /// The gadget declares no data source (no GADGET_TRACER, GADGET_ITER or
    /// GADGET_MAPITER in its BTF).
    #[error(
        "the gadget declares no data source (no GADGET_TRACER, GADGET_ITER or GADGET_MAPITER in its BTF)"
    )]
    NoDataSource,
    /// Data source `source_name`: map `map` is not declared with
    /// GADGET_TRACER_MAP.
    #[error("data source {source_name}: map {map} is not declared with GADGET_TRACER_MAP")]
    NotATracerMap {
        /// The data source.
        source_name: String,
        /// The map.
        map: String,
    },
    /// Data sources `first` and `second` both read map `map`.
    #[error("data sources {first} and {second} both read map {map}; each tracer needs its own map")]
    SharedMap {
        /// The first.
        first: String,
        /// The second.
        second: String,
        /// The map.
        map: String,
    },
    /// Data source `source_name`: `what` `name` is not in the object.
    #[error("data source {source_name}: {what} {name} is not in the object")]
    Missing {
        /// The data source.
        source_name: String,
        /// What is missing (a map, a struct...).
        what: &'static str,
        /// The name.
        name: String,
    },
    /// Data source `source_name`: map `map` has no BTF key and value types
    /// (declare it with __type(key, ...) and __type(value, ...)).
    #[error(
        "data source {source_name}: map {map} has no BTF key and value types (declare it with __type(key, ...) and __type(value, ...))"
    )]
    UntypedMap {
        /// The data source.
        source_name: String,
        /// The map.
        map: String,
    },
    /// Data source `source_name`: struct `struct_name` has size 0.
    #[error(
        "data source {source_name}: struct {struct_name} has size 0; iterator records need fields"
    )]
    EmptyRecord {
        /// The data source.
        source_name: String,
        /// The struct.
        struct_name: String,
    },
    /// Data source `source_name`: program `program` is not an iterator (section
    /// `section`).
    #[error("data source {source_name}: program {program} is not an iterator (section {section})")]
    NotAnIterator {
        /// The data source.
        source_name: String,
        /// The program.
        program: String,
        /// The section.
        section: String,
    },
}

impl EbpfOperator {
    /// Parse the object (no kernel involved) so that its parameters are
    /// known before the command line is parsed, and so that an unsupported
    /// section or a malformed marker is reported before anything is loaded.
    pub fn new(
        object: Vec<u8>,
        metadata: GadgetMetadata,
        options: EbpfOptions,
    ) -> Result<Self, OperatorError> {
        let fail = |e: Box<dyn std::error::Error + Send + Sync>| OperatorError::failed(NAME, e);
        let Inspected {
            object,
            info,
            btf,
            contract,
        } = inspect(&object).map_err(fail)?;
        let plan = plan(&info.programs, &contract, &metadata).map_err(|e| fail(e.into()))?;
        let params = EbpfParam::discover(&contract.params, &btf, &info, &metadata)
            .map_err(|e| fail(e.into()))?;
        let enricher = btf
            .find_var(socket_enricher::MAP)
            .map(|_| socket_enricher::Fields::default());
        // As upstream, filters go into TC programs only (a socket
        // filter's hook is not given the packet's start and end).
        let has_tc = plan
            .iter()
            .any(|p| matches!(p.attach, crate::bpf::programs::Attach::Tc { .. }));
        let pf_functions = if has_tc {
            crate::bpf::pf::functions(&btf)
        } else {
            Vec::new()
        };
        Ok(Self {
            object,
            info,
            btf,
            contract,
            plan,
            metadata,
            options,
            params,
            globals: Vec::new(),
            fetch_interval: Duration::from_secs(1),
            fetch_count: 0,
            enricher,
            iface: None,
            pf_functions,
            filters: Vec::new(),
        })
    }

    /// Settings that depend on the parsed command line. Asks the local
    /// manager to follow containers when the object has programs that
    /// attach per container.
    pub fn set_options(&mut self, options: EbpfOptions) {
        if let Some(t) = &options.targets
            && self.follows_containers()
        {
            t.want();
        }
        self.options = options;
    }

    /// Whether some program attaches per container (uprobes: in each
    /// container's files; socket filters: in each network namespace).
    fn follows_containers(&self) -> bool {
        use crate::bpf::programs::Attach;
        self.plan.iter().any(|p| {
            matches!(
                p.attach,
                Attach::UProbe { .. } | Attach::Socket | Attach::Tc { .. }
            )
        })
    }

    fn has_tc(&self) -> bool {
        self.plan
            .iter()
            .any(|p| matches!(p.attach, crate::bpf::programs::Attach::Tc { .. }))
    }

    /// The gadget's metadata as the custom parameters patched it (data
    /// source and field annotations may change; programs and parameters
    /// were read from the original).
    pub fn set_metadata(&mut self, metadata: GadgetMetadata) {
        self.metadata = metadata;
    }

    /// The smallest ring buffer the object declares (`max_entries` of its
    /// tracer maps, read from BTF).
    pub fn declared_ringbuf_size(&self) -> Option<u32> {
        self.contract
            .tracer_maps
            .iter()
            .filter_map(|m| map_max_entries(&self.btf, m))
            .min()
    }

    fn topper_params() -> Vec<ParamSpec> {
        vec![
            ParamSpec {
                key: "map-fetch-interval".into(),
                alias: None,
                full_name: FETCH_INTERVAL.into(),
                description: "How often map-iterator data sources (toppers) are read and emptied (0: only when ig stops)"
                    .into(),
                default: "1s".into(),
                ty: ParamType::Duration,
                group: "eBPF".into(),
            },
            ParamSpec {
                key: "map-fetch-count".into(),
                alias: None,
                full_name: FETCH_COUNT.into(),
                description: "How many times toppers are read before ig stops (0: until Ctrl-C)"
                    .into(),
                default: "0".into(),
                ty: ParamType::Int {
                    bits: 32,
                    signed: false,
                },
                group: "eBPF".into(),
            },
        ]
    }

    /// Check the data sources against the object and build their schemas.
    fn schemas(&self) -> Result<Vec<(DataSource, SchemaBuilder)>, EbpfError> {
        let c = &self.contract;
        let meta = |name: &str| self.metadata.datasources.get(name);
        let schema_err = |e: crate::bpf::schema::SchemaFromBtfError| e;
        let mut out: Vec<(DataSource, SchemaBuilder)> = Vec::new();
        for (i, t) in c.tracers.iter().enumerate() {
            // A ring buffer of GADGET_TRACER_MAP, or a perf event array
            // (upstream's tcpdump appends packet bytes with
            // bpf_perf_event_output).
            let perf = map_type(&self.btf, &t.map) == Some(PERF_EVENT_ARRAY);
            if !perf && !c.tracer_maps.contains(&t.map) {
                return Err(EbpfError::NotATracerMap {
                    source_name: t.name.clone(),
                    map: t.map.clone(),
                });
            }
            if let Some(other) = c.tracers[..i].iter().find(|o| o.map == t.map) {
                return Err(EbpfError::SharedMap {
                    first: other.name.clone(),
                    second: t.name.clone(),
                    map: t.map.clone(),
                });
            }
            let (schema, w) = schema_from_btf(
                &self.btf,
                &t.name,
                &t.struct_name,
                SourceKind::Single,
                meta(&t.name),
            )
            .map_err(|e| EbpfError::Missing {
                source_name: t.name.clone(),
                what: "struct",
                name: schema_err(e).to_string(),
            })?;
            w.0.iter().for_each(|w| log::warn!("{w}"));
            let mut schema = schema;
            let rest = rest_plan(&mut schema)?;
            out.push((
                DataSource::Tracer {
                    name: t.name.clone(),
                    map: t.map.clone(),
                    perf,
                    rest,
                },
                schema,
            ));
        }
        for it in &c.iters {
            for p in &it.programs {
                let plan =
                    self.plan
                        .iter()
                        .find(|x| &x.name == p)
                        .ok_or_else(|| EbpfError::Missing {
                            source_name: it.name.clone(),
                            what: "program",
                            name: p.clone(),
                        })?;
                if !plan.section.starts_with("iter/") {
                    return Err(EbpfError::NotAnIterator {
                        source_name: it.name.clone(),
                        program: p.clone(),
                        section: plan.section.clone(),
                    });
                }
            }
            let (schema, w) = schema_from_btf(
                &self.btf,
                &it.name,
                &it.struct_name,
                SourceKind::Array,
                meta(&it.name),
            )
            .map_err(|e| EbpfError::Missing {
                source_name: it.name.clone(),
                what: "struct",
                name: e.to_string(),
            })?;
            w.0.iter().for_each(|w| log::warn!("{w}"));
            let record = schema.schema().raw_size as usize;
            if record == 0 {
                // Records are cut by the struct's size; zero would never end.
                return Err(EbpfError::EmptyRecord {
                    source_name: it.name.clone(),
                    struct_name: it.struct_name.clone(),
                });
            }
            out.push((
                DataSource::Snapshot {
                    name: it.name.clone(),
                    programs: it.programs.clone(),
                    record,
                },
                schema,
            ));
        }
        for m in &c.map_iters {
            let (k, v) = map_key_value(&self.btf, &m.map).ok_or_else(|| {
                if self.btf.find_var(&m.map).is_none() {
                    EbpfError::Missing {
                        source_name: m.name.clone(),
                        what: "map",
                        name: m.map.clone(),
                    }
                } else {
                    EbpfError::UntypedMap {
                        source_name: m.name.clone(),
                        map: m.map.clone(),
                    }
                }
            })?;
            let (mut schema, w) = schema_from_structs(
                &self.btf,
                &m.name,
                &[k, v],
                SourceKind::Array,
                meta(&m.name),
            )
            .map_err(|e| EbpfError::Missing {
                source_name: m.name.clone(),
                what: "key/value struct",
                name: e.to_string(),
            })?;
            w.0.iter().for_each(|w| log::warn!("{w}"));
            // Toppers redraw their table at every interval, as upstream's.
            schema
                .annotations_mut()
                .entry("cli.clear-screen-before".into())
                .or_insert_with(|| "true".into());
            let key_size = self.btf.size_of(k).unwrap_or(0);
            let value_size = self.btf.size_of(v).unwrap_or(0);
            out.push((
                DataSource::Topper {
                    map: m.map.clone(),
                    key_size,
                    value_size,
                },
                schema,
            ));
        }
        if out.is_empty() {
            return Err(EbpfError::NoDataSource);
        }
        Ok(out)
    }
}

/// Maps sized at run time, upstream's convention: a map `M` declared with
/// `__uint(max_entries, 0)` next to a `const volatile` integer
/// `M_max_entries` (usually a `GADGET_PARAM`) gets that many entries
/// (upstream's `user_stack_map.h` sizes `ig_build_id` so). `(M, variable)`.
fn runtime_sized_maps(btf: &Btf, info: &ObjectInfo) -> Vec<(String, String)> {
    let Some(crate::btf::Kind::Datasec(maps)) =
        btf.find_datasec(".maps").and_then(|d| btf.kind(d).ok())
    else {
        return Vec::new();
    };
    maps.vars
        .iter()
        .filter_map(|v| btf.name_of(v.ty).ok())
        .map(|map| (map.to_owned(), format!("{map}_max_entries")))
        .filter(|(_, var)| info.rodata_value(var).is_some())
        .collect()
}

/// The sizes of `sized` maps: the user's value of the variable if one is
/// set (in `globals`), else its value in `.rodata`.
fn runtime_max_entries(
    sized: &[(String, String)],
    info: &ObjectInfo,
    globals: &[(String, Vec<u8>)],
) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for (map, var) in sized {
        let bytes = globals
            .iter()
            .find(|(n, _)| n == var)
            .map(|(_, b)| b.as_slice())
            .or_else(|| info.rodata_value(var));
        let n = match bytes {
            Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]),
            Some(&[a, b, c, d, e, f, g, h]) => {
                u32::try_from(u64::from_le_bytes([a, b, c, d, e, f, g, h])).unwrap_or(u32::MAX)
            }
            _ => continue,
        };
        out.push((map.clone(), n));
    }
    out
}

/// Upstream's annotations for bytes after the event struct in a sample
/// (`bpf_perf_event_output` with the packet appended, tcpdump): the name
/// of the bytes field to add, and the field that gives their length.
const REST_NAME: &str = "ebpf.rest.name";
const REST_LEN: &str = "ebpf.rest.len";

/// Where the bytes after the struct go (`ebpf.rest.name`) and how many
/// there are (`ebpf.rest.len`: a field of the struct; without it, all).
#[derive(Clone, Copy, Debug)]
struct RestPlan {
    field: crate::datasource::FieldId,
    len: Option<crate::datasource::FieldId>,
}

/// The rest field of a tracer's schema, if its annotations ask for one.
fn rest_plan(schema: &mut SchemaBuilder) -> Result<Option<RestPlan>, EbpfError> {
    let annotations = &schema.schema().annotations;
    let Some(name) = annotations.get(REST_NAME).cloned() else {
        return Ok(None);
    };
    let len_name = annotations.get(REST_LEN).cloned();
    let source_name = schema.name().to_owned();
    let missing = |what: &'static str, name: String| EbpfError::Missing {
        source_name: source_name.clone(),
        what,
        name,
    };
    let len = match len_name {
        Some(l) => Some(
            schema
                .schema()
                .field_by_name(&l)
                .filter(|f| schema.schema().field(*f).kind.is_numeric())
                .ok_or_else(|| missing("numeric field (ebpf.rest.len)", l.clone()))?,
        ),
        None => None,
    };
    let field = schema
        .add_owned(name.clone(), crate::datasource::FieldKind::Bytes, None)
        .map_err(|e| {
            missing(
                "room for the field (ebpf.rest.name)",
                format!("{name}: {e}"),
            )
        })?;
    Ok(Some(RestPlan { field, len }))
}

/// A data source and where its data comes from.
#[derive(Clone, Debug)]
enum DataSource {
    Tracer {
        name: String,
        map: String,
        /// A perf event array, not a ring buffer.
        perf: bool,
        rest: Option<RestPlan>,
    },
    Snapshot {
        name: String,
        programs: Vec<String>,
        record: usize,
    },
    Topper {
        map: String,
        key_size: u32,
        value_size: u32,
    },
}

impl Operator for EbpfOperator {
    fn name(&self) -> &'static str {
        NAME
    }
    fn data_source_names(&self) -> Vec<String> {
        let c = &self.contract;
        c.tracers
            .iter()
            .map(|t| t.name.clone())
            .chain(c.iters.iter().map(|i| i.name.clone()))
            .chain(c.map_iters.iter().map(|m| m.name.clone()))
            .collect()
    }
    fn priority(&self) -> Priority {
        priority::EBPF
    }
    fn params(&self) -> Vec<ParamSpec> {
        let mut specs: Vec<ParamSpec> = self.params.iter().map(|p| p.spec.clone()).collect();
        if !self.contract.map_iters.is_empty() {
            specs.extend(Self::topper_params());
        }
        for f in &self.pf_functions {
            let Some(key) = crate::bpf::pf::param_key(f) else {
                continue;
            };
            specs.push(ParamSpec {
                full_name: format!("{}{key}", crate::bpf::params::PREFIX),
                description: format!(
                    "Packet filter in tcpdump's syntax (e.g. 'tcp port 443'), for hook {f}; \
                     compiled with tcpdump, which must be installed"
                ),
                key,
                alias: None,
                default: String::new(),
                ty: ParamType::String { max_len: None },
                group: "eBPF".into(),
            });
        }
        if self.has_tc() {
            specs.push(ParamSpec {
                key: "iface".into(),
                alias: None,
                full_name: IFACE.into(),
                description:
                    "Network interface TC programs attach to; without it, the host side of \
                              each container's interfaces, following containers as they come and go"
                        .into(),
                default: String::new(),
                ty: ParamType::String { max_len: None },
                group: "eBPF".into(),
            });
        }
        if self.enricher.is_some() {
            specs.push(ParamSpec {
                key: "socket-enricher-fields".into(),
                alias: None,
                full_name: socket_enricher::FIELDS_PARAM.into(),
                description:
                    "Optional fields of the socket enricher (which process owns each socket), \
                              as field=size,...: cwd and exepath, sizes a power of two up to 4096 \
                              (0: 512); empty for none. Smaller is cheaper"
                        .into(),
                default: socket_enricher::DEFAULT_FIELDS.into(),
                ty: ParamType::String { max_len: None },
                group: "eBPF".into(),
            });
        }
        specs
    }

    fn apply_params(&mut self, values: &ParamValues) -> Result<(), OperatorError> {
        self.globals = self
            .params
            .iter()
            .filter_map(|p| {
                values
                    .get(&p.spec.full_name)
                    .map(|v| (p.var.clone(), p.encode(v)))
            })
            .filter(|(_, bytes)| !bytes.is_empty())
            .collect();
        if let Some(ParamValue::Duration(d)) = values.get(FETCH_INTERVAL) {
            self.fetch_interval = *d;
        }
        if let Some(ParamValue::Int(n)) = values.get(FETCH_COUNT) {
            self.fetch_count = u64::try_from(*n).unwrap_or(0);
        }
        self.filters.clear();
        for f in &self.pf_functions {
            let Some(key) = crate::bpf::pf::param_key(f) else {
                continue;
            };
            let Some(ParamValue::Str(expr)) =
                values.get(&format!("{}{key}", crate::bpf::params::PREFIX))
            else {
                continue;
            };
            if expr.trim().is_empty() {
                continue;
            }
            let fail = |e: crate::bpf::pf::PfError| {
                OperatorError::failed(NAME, format!("--{key}: {}", crate::bpf::error_chain(&e)))
            };
            let code = if expr == crate::bpf::pf::REJECT_ALL {
                crate::bpf::pf::reject_all()
            } else {
                crate::bpf::pf::to_ebpf(&crate::bpf::pf::compile(expr).map_err(fail)?)
                    .map_err(fail)?
            };
            log::debug!(
                "--{key} {expr:?}: {} eBPF instructions before {f}",
                code.len()
            );
            self.filters.push((f.clone(), code));
        }
        if let Some(ParamValue::Str(i)) = values.get(IFACE) {
            self.iface = (!i.is_empty()).then(|| i.clone());
        }
        if self.enricher.is_some()
            && let Some(ParamValue::Str(f)) = values.get(socket_enricher::FIELDS_PARAM)
        {
            self.enricher = Some(
                socket_enricher::Fields::parse(f).map_err(|e| OperatorError::failed(NAME, e))?,
            );
        }
        if self.fetch_interval.is_zero()
            && self.fetch_count > 1
            && !self.contract.map_iters.is_empty()
        {
            return Err(OperatorError::failed(
                NAME,
                "--map-fetch-count above 1 needs a --map-fetch-interval above 0",
            ));
        }
        Ok(())
    }

    fn instantiate(
        self: Box<Self>,
        setup: &mut Setup,
    ) -> Result<Option<Box<dyn Instance>>, OperatorError> {
        let schemas = self.schemas().map_err(|e| OperatorError::failed(NAME, e))?;
        let mut sources = Vec::new();
        let mut stack_fields = Vec::new();
        for (ds, mut schema) in schemas {
            let st = stacks::StackFields::plan(&mut schema)?;
            let id = setup.add_source(schema);
            stack_fields.extend(st.map(|st| (id, st)));
            sources.push((ds, id));
        }
        let sized_maps = runtime_sized_maps(&self.btf, &self.info);
        let Self {
            object,
            info,
            contract,
            plan,
            metadata,
            options,
            globals,
            fetch_interval,
            fetch_count,
            enricher,
            iface,
            filters,
            ..
        } = *self;
        Ok(Some(Box::new(EbpfInstance {
            object,
            info,
            sized_maps,
            contract,
            plan,
            metadata,
            sources,
            options,
            globals,
            fetch_interval,
            fetch_count,
            loaded: None,
            readers: Vec::new(),
            snapshots: Vec::new(),
            toppers: Vec::new(),
            stack_fields,
            symbolizer: None,
            targets_seen: 0,
            enricher_fields: enricher,
            enricher: None,
            iface,
            interfaces_seen: Instant::now(),
            filters,
        })))
    }
}

struct Reader {
    source: SourceId,
    name: String,
    rb: Ring,
    lost: Option<LostCounter>,
    event: Option<Event>,
    rest: Option<RestPlan>,
}

/// Where a tracer's samples come from.
enum Ring {
    Ring(RingBuffer),
    /// A perf event array's rings, and the buffer samples are copied to.
    Perf(PerfReader, Vec<u8>),
}

/// Bytes of each CPU's perf ring (upstream's 64 pages).
const PERF_RING_BYTES: usize = 256 << 10;

impl Ring {
    fn fds(&self) -> Vec<RawFd> {
        match self {
            Self::Ring(rb) => vec![rb.fd()],
            Self::Perf(p, _) => p.fds().collect(),
        }
    }

    /// Hand pending samples to `f` (false: stop now), as
    /// `RingBuffer::drain`.
    fn drain(&mut self, mut f: impl FnMut(&[u8]) -> bool) {
        match self {
            Self::Ring(rb) => {
                rb.drain(f);
            }
            Self::Perf(p, buf) => {
                let start = Instant::now();
                let mut n = 0u32;
                while p.read(buf) == PerfRead::Record {
                    n += 1;
                    if !f(buf) || (n.is_multiple_of(1024) && start.elapsed() >= DRAIN_SLICE) {
                        break;
                    }
                }
            }
        }
    }
}

/// Put a sample in `ev`, with the bytes after the struct in the rest
/// field when there is one.
fn load_sample(
    ev: &mut Event,
    schema: &crate::datasource::Schema,
    rest: Option<RestPlan>,
    sample: &[u8],
) {
    ev.set_raw(sample);
    let Some(r) = rest else { return };
    let size = schema.raw_size as usize;
    let extra = sample.get(size..).unwrap_or_default();
    let n = match r.len {
        Some(l) => match ev.get(schema.field(l)) {
            crate::datasource::ValueRef::U64(n) => usize::try_from(n).unwrap_or(usize::MAX),
            crate::datasource::ValueRef::I64(n) => usize::try_from(n).unwrap_or(0),
            _ => extra.len(),
        },
        None => extra.len(),
    };
    ev.set_bytes(schema.field(r.field), &extra[..n.min(extra.len())]);
}

struct Snapshot {
    source: SourceId,
    name: String,
    programs: Vec<String>,
    record: usize,
    done: bool,
}

struct Topper {
    source: SourceId,
    drain: HashDrain,
    record: usize,
    /// When the next fetch is due; `None`: only when the run stops.
    next: Option<Instant>,
    fetched: u64,
    buf: Vec<u8>,
}

struct EbpfInstance {
    object: Vec<u8>,
    info: ObjectInfo,
    /// `(map, variable)`: maps sized at run time (`runtime_sized_maps`).
    sized_maps: Vec<(String, String)>,
    contract: Contract,
    plan: Vec<ProgramPlan>,
    metadata: GadgetMetadata,
    sources: Vec<(DataSource, SourceId)>,
    options: EbpfOptions,
    globals: Vec<(String, Vec<u8>)>,
    fetch_interval: Duration,
    fetch_count: u64,
    loaded: Option<LoadedGadget>,
    readers: Vec<Reader>,
    snapshots: Vec<Snapshot>,
    toppers: Vec<Topper>,
    /// Data sources with stack fields (`stacks.rs`), and what reads them.
    stack_fields: Vec<(SourceId, stacks::StackFields)>,
    symbolizer: Option<stacks::Symbolizer>,
    /// Generation of the target set last attached to.
    targets_seen: u64,
    /// Set when the object declares `gadget_sockets`.
    enricher_fields: Option<socket_enricher::Fields>,
    /// Running from start to stop, when it could start.
    enricher: Option<SocketEnricher>,
    /// `--iface` (TC programs).
    iface: Option<String>,
    /// When the followed containers' interfaces were last looked for.
    interfaces_seen: Instant,
    /// Compiled `--pf` filters: (hook function, eBPF code).
    filters: Vec<(String, Vec<[u8; 8]>)>,
}

impl Instance for EbpfInstance {
    fn start(&mut self) -> Result<(), OperatorError> {
        let fail = |e: LoadError| OperatorError::failed(NAME, e);
        let mut globals = self.globals.clone();
        if let Some(t) = self.options.wakeup_threshold {
            globals.push((WAKEUP_THRESHOLD_VAR.to_owned(), t.to_ne_bytes().to_vec()));
        }
        let filter = self.mntns_filter();
        if filter.is_some() {
            globals.push((mntns_filter::FLAG_VAR.to_owned(), vec![1]));
        }
        let mut max_entries = runtime_max_entries(&self.sized_maps, &self.info, &globals);
        if let Some(n) = self.options.ringbuf_size {
            max_entries.extend(self.contract.tracer_maps.iter().map(|m| (m.clone(), n)));
        }
        let mut plan = self.plan.clone();
        if let Some(g) = &self.options.shared {
            let config = g.take_config_for_load();
            let warnings = apply_config(&mut plan, &config, &self.metadata)
                .map_err(|e| OperatorError::failed(NAME, e))?;
            for w in warnings {
                log::warn!("{w}");
            }
        }
        let targets = match &self.options.targets {
            Some(t) => {
                self.targets_seen = 0;
                t.changed_since(&mut self.targets_seen);
                t.current()
            }
            None => TargetSet::host_only(),
        };
        // Before the gadget: the gadget is given the enricher's map and
        // relocated against its layout.
        self.enricher = self.enricher_fields.and_then(|f| {
            SocketEnricher::start(f)
                .map_err(|e| {
                    log::warn!(
                        "the socket enricher could not start ({}): events of this gadget carry no process",
                        crate::bpf::error_chain(&e)
                    );
                })
                .ok()
        });
        let replace: Vec<(&str, i32)> = self
            .enricher
            .iter()
            .map(|e| (socket_enricher::MAP, e.map_fd()))
            .collect();
        let mut object = std::borrow::Cow::Borrowed(self.object.as_slice());
        for (f, code) in &self.filters {
            object = std::borrow::Cow::Owned(
                crate::bpf::compat::inject_at_function(&object, f, code)
                    .map_err(|e| OperatorError::failed(NAME, e))?,
            );
        }
        let spec = LoadSpec {
            object: &object,
            info: &self.info,
            plan: &plan,
            globals: &globals,
            max_entries: &max_entries,
            prefetch: self.options.prefetch.as_ref(),
            targets: &targets,
            replace_maps: &replace,
            socket_value_btf: self.enricher.as_ref().map(SocketEnricher::value_btf),
            iface: self.iface.as_deref(),
        };
        let mut loaded = LoadedGadget::load(&spec).map_err(fail)?;
        if let Some(g) = &self.options.shared {
            // Before the ring buffers and drained maps are taken out.
            let maps = loaded.share_maps().into_iter().filter_map(|(name, fd)| {
                MapFd::from_fd(fd)
                    .map_err(|e| log::debug!("map {name} is not shared with the guest: {e}"))
                    .ok()
                    .map(|m| (name, m))
            });
            g.publish_maps(maps);
        }
        if let Some(f) = filter {
            // From now on the filter writes the map itself, before the
            // local manager lets a held container runtime go on.
            match loaded.take_u64_set(mntns_filter::MAP).map_err(fail)? {
                Some(set) => f
                    .attach(Box::new(set))
                    .map_err(|e| OperatorError::failed(NAME, e))?,
                None => log::warn!(
                    "the gadget has no {} (gadget/mntns_filter.h): containers are selected in user space only",
                    mntns_filter::MAP
                ),
            }
        }
        let now = Instant::now();
        for (ds, id) in &self.sources {
            match ds {
                DataSource::Tracer {
                    name,
                    map,
                    perf,
                    rest,
                } => {
                    let (rb, lost) = if *perf {
                        let fd = loaded
                            .share_maps()
                            .into_iter()
                            .find(|(n, _)| n == map)
                            .map(|(_, fd)| fd)
                            .ok_or_else(|| fail(LoadError::MissingMap { map: map.clone() }))?;
                        let reader = MapFd::from_fd(fd)
                            .map_err(|e| e.to_string())
                            .and_then(|m| {
                                PerfReader::new(std::sync::Arc::new(m), PERF_RING_BYTES, false)
                                    .map_err(|e| crate::bpf::error_chain(&e))
                            })
                            .map_err(|e| {
                                OperatorError::failed(NAME, format!("perf event array {map}: {e}"))
                            })?;
                        (Ring::Perf(reader, Vec::new()), None)
                    } else {
                        (
                            Ring::Ring(loaded.ring_buffer(map).map_err(fail)?),
                            loaded.lost_counter(map).map_err(fail)?,
                        )
                    };
                    self.readers.push(Reader {
                        source: *id,
                        name: name.clone(),
                        rb,
                        lost,
                        event: None,
                        rest: *rest,
                    });
                }
                DataSource::Snapshot {
                    name,
                    programs,
                    record,
                } => self.snapshots.push(Snapshot {
                    source: *id,
                    name: name.clone(),
                    programs: programs.clone(),
                    record: *record,
                    done: false,
                }),
                DataSource::Topper {
                    map,
                    key_size,
                    value_size,
                    ..
                } => {
                    let drain = loaded.hash_map(map, *key_size, *value_size).map_err(fail)?;
                    let next = if !self.fetch_interval.is_zero() {
                        Some(now + self.fetch_interval)
                    } else if self.fetch_count == 1 {
                        Some(now)
                    } else {
                        None
                    };
                    self.toppers.push(Topper {
                        source: *id,
                        drain,
                        record: (*key_size + *value_size) as usize,
                        next,
                        fetched: 0,
                        buf: Vec::new(),
                    });
                }
            }
        }
        let kernel = self.stack_fields.iter().any(|(_, f)| f.has_kernel());
        let user = self.stack_fields.iter().any(|(_, f)| f.has_user());
        if kernel || user {
            self.symbolizer =
                Some(stacks::Symbolizer::start(&mut loaded, kernel, user).map_err(fail)?);
        }
        self.loaded = Some(loaded);
        Ok(())
    }

    fn stop(&mut self) -> Result<(), OperatorError> {
        // Dropping the readers and the object closes every fd: programs
        // detach, maps, perf events and sockets are freed.
        self.readers.clear();
        self.toppers.clear();
        self.symbolizer = None;
        self.loaded = None;
        self.enricher = None;
        if let Some(g) = &self.options.shared {
            g.withdraw_maps();
        }
        Ok(())
    }

    fn source(&mut self) -> Option<&mut dyn Source> {
        Some(self)
    }
}

impl EbpfInstance {
    /// The container filter, if one is shared with us and enabled.
    fn mntns_filter(&self) -> Option<MntnsFilter> {
        self.options
            .mntns_filter
            .clone()
            .filter(MntnsFilter::is_enabled)
    }
}

/// Cut `bytes` into `record`-sized events of `schema`.
fn records(bytes: &[u8], record: usize, out: &Dispatch, id: SourceId) -> Vec<Event> {
    if record == 0 {
        return Vec::new();
    }
    bytes
        .chunks_exact(record)
        .map(|r| {
            let mut e = Event::new(out.schema(id));
            e.set_raw(r);
            e
        })
        .collect()
}

impl Source for EbpfInstance {
    fn fds(&self) -> Vec<RawFd> {
        self.readers.iter().flat_map(|r| r.rb.fds()).collect()
    }

    fn drain(&mut self, out: &mut Dispatch) -> Result<(), OperatorError> {
        for r in &mut self.readers {
            let ev = r
                .event
                .get_or_insert_with(|| Event::new(out.schema(r.source)));
            let id = r.source;
            let rest = r.rest;
            match (
                stacks::fields_of(&self.stack_fields, id),
                self.symbolizer.as_mut(),
            ) {
                (Some(st), Some(sym)) => {
                    let schema = out.schema(id).clone();
                    r.rb.drain(|sample| {
                        load_sample(ev, &schema, rest, sample);
                        sym.fill(&schema, st, ev);
                        out.event(id, ev);
                        !out.take_yield()
                    });
                }
                _ if rest.is_some() => {
                    let schema = out.schema(id).clone();
                    r.rb.drain(|sample| {
                        load_sample(ev, &schema, rest, sample);
                        out.event(id, ev);
                        !out.take_yield()
                    });
                }
                _ => {
                    r.rb.drain(|sample| {
                        ev.set_raw(sample);
                        out.event(id, ev);
                        !out.take_yield()
                    });
                }
            }
        }
        if let Some(loaded) = self.loaded.as_mut() {
            for s in self.snapshots.iter_mut().filter(|s| !s.done) {
                let mut bytes = Vec::new();
                for p in &s.programs {
                    let b = loaded
                        .run_iterator(p)
                        .map_err(|e| OperatorError::failed(NAME, e))?;
                    if b.len() % s.record != 0 {
                        log::warn!(
                            "snapshot {}: iterator {p} wrote {} bytes, not a multiple of the {}-byte record; the rest is ignored",
                            s.name,
                            b.len(),
                            s.record
                        );
                    }
                    bytes.extend_from_slice(&b[..b.len() - b.len() % s.record]);
                }
                let mut events = records(&bytes, s.record, out, s.source);
                out.array(s.source, &mut events);
                s.done = true;
            }
        }
        let now = Instant::now();
        for t in &mut self.toppers {
            let due = t.next.is_some_and(|n| now >= n)
                && (self.fetch_count == 0 || t.fetched < self.fetch_count);
            if !due {
                continue;
            }
            t.buf.clear();
            t.drain
                .drain(&mut t.buf)
                .map_err(|e| OperatorError::failed(NAME, e))?;
            let mut events = records(&t.buf, t.record, out, t.source);
            let schema = out.schema(t.source).clone();
            stacks::fill_array(
                self.symbolizer.as_mut(),
                &self.stack_fields,
                t.source,
                &schema,
                &mut events,
            );
            out.array(t.source, &mut events);
            t.fetched += 1;
            t.next = (!self.fetch_interval.is_zero())
                .then(|| now + self.fetch_interval.max(Duration::from_millis(10)));
        }
        Ok(())
    }

    /// The last, partial interval of a topper is data too.
    fn finish(&mut self, out: &mut Dispatch) -> Result<(), OperatorError> {
        for t in &mut self.toppers {
            if self.fetch_count == 0 || t.fetched < self.fetch_count {
                t.next = Some(Instant::now());
            }
        }
        let readers = std::mem::take(&mut self.readers);
        let result = self.drain(out);
        self.readers = readers;
        result
    }

    fn tick(&mut self, _out: &mut Dispatch) -> Result<Vec<Notice>, OperatorError> {
        if let (Some(t), Some(loaded)) = (&self.options.targets, self.loaded.as_mut())
            && let Some(set) = t.changed_since(&mut self.targets_seen)
        {
            loaded.retarget(&set);
        }
        if let Some(loaded) = self.loaded.as_mut()
            && self.interfaces_seen.elapsed() >= Duration::from_secs(1)
        {
            self.interfaces_seen = Instant::now();
            loaded.refresh_interfaces();
        }
        if let Some(e) = self.enricher.as_mut() {
            e.tick();
        }
        // Tracers' stacks: one batch per tick.
        if let Some(sym) = self.symbolizer.as_mut()
            && self
                .readers
                .iter()
                .any(|r| stacks::fields_of(&self.stack_fields, r.source).is_some())
        {
            sym.end_batch();
            sym.begin_batch();
        }
        let mut notices = Vec::new();
        for r in &mut self.readers {
            if let Ring::Perf(p, _) = &mut r.rb {
                let n = p.take_lost();
                if n > 0 {
                    notices.push(Notice::Lost {
                        source: r.name.clone(),
                        count: n,
                    });
                }
            }
            if let Some(l) = &mut r.lost {
                let n = l.take_new().map_err(|e| OperatorError::failed(NAME, e))?;
                if n > 0 {
                    notices.push(Notice::Lost {
                        source: r.name.clone(),
                        count: n,
                    });
                }
            }
        }
        Ok(notices)
    }

    /// Tracers never finish; a gadget with only snapshots finishes after
    /// them, and toppers after `--map-fetch-count` fetches.
    fn finished(&self) -> bool {
        self.readers.is_empty()
            && self.snapshots.iter().all(|s| s.done)
            && (self.toppers.is_empty()
                || (self.fetch_count > 0
                    && self.toppers.iter().all(|t| t.fetched >= self.fetch_count)))
    }
}
