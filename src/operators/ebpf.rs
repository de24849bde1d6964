//! The eBPF image operator (priority 0): turns a gadget object into data
//! sources and feeds their events into the chain.
//!
//! Instantiate (no kernel): parse the object, find the contract markers,
//! build one schema per tracer from BTF plus `gadget.yaml`. Start (kernel):
//! load and attach through `bpf::loader`, take the ring buffers. While
//! running it is the chain's [`Source`]: each drain copies every pending
//! sample into a reused [`Event`] and dispatches it; each tick reads the
//! `<map>_lost_samples` counters. Stop drops every kernel object.
//!
//! Reads: the object's BTF and `.rodata`, `gadget.yaml` `datasources`.
//! Writes: one data source per `GADGET_TRACER`.

use std::os::fd::RawFd;

use crate::bpf::contract::{Contract, Tracer, map_max_entries};
use crate::bpf::loader::{LoadSpec, LoadedGadget, LostCounter, RingBuffer};
use crate::bpf::object::ObjectInfo;
use crate::bpf::params::EbpfParam;
use crate::bpf::schema::schema_from_btf;
use crate::btf::Btf;
use crate::datasource::{Event, SourceKind};
use crate::metadata::GadgetMetadata;
use crate::params::{ParamSpec, ParamValues};
use crate::pipeline::{
    Dispatch, Instance, Notice, Operator, OperatorError, Priority, Setup, Source, SourceId,
    priority,
};

const NAME: &str = "ebpf";

/// The `.rodata` variable of `buffer.h` that sets how many pending bytes make
/// the kernel wake the reader (0: every event may wake it).
pub const WAKEUP_THRESHOLD_VAR: &str = "gadget_ringbuf_wakeup_threshold";

/// Settings of the eBPF operator.
#[derive(Clone, Debug, Default)]
pub struct EbpfOptions {
    /// Bytes pending in a ring buffer before the kernel wakes the reader;
    /// `None` for the kernel's default (wake when the reader caught up).
    pub wakeup_threshold: Option<u64>,
    /// Ring buffer size override in bytes (a power of two, multiple of the
    /// page size), applied to every tracer map.
    pub ringbuf_size: Option<u32>,
}

pub struct EbpfOperator {
    object: Vec<u8>,
    info: ObjectInfo,
    btf: Btf,
    contract: Contract,
    metadata: GadgetMetadata,
    options: EbpfOptions,
    params: Vec<EbpfParam>,
    /// `.rodata` values chosen by the user, from `apply_params`.
    globals: Vec<(String, Vec<u8>)>,
}

impl EbpfOperator {
    /// Parse the object (no kernel involved) so that its parameters are
    /// known before the command line is parsed.
    pub fn new(
        object: Vec<u8>,
        metadata: GadgetMetadata,
        options: EbpfOptions,
    ) -> Result<Self, OperatorError> {
        let fail = |e: Box<dyn std::error::Error + Send + Sync>| OperatorError::failed(NAME, e);
        let info = ObjectInfo::parse(&object).map_err(|e| fail(e.into()))?;
        let btf = Btf::parse(&info.btf).map_err(|e| fail(e.into()))?;
        let contract = Contract::discover(&btf).map_err(|e| fail(e.into()))?;
        let params = EbpfParam::discover(&contract.params, &btf, &info, &metadata)
            .map_err(|e| fail(e.into()))?;
        Ok(Self {
            object,
            info,
            btf,
            contract,
            metadata,
            options,
            params,
            globals: Vec::new(),
        })
    }

    /// Settings that depend on the parsed command line.
    pub fn set_options(&mut self, options: EbpfOptions) {
        self.options = options;
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
}

#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    #[error("the gadget has {kind} data source {name}, which this version of ig cannot run yet")]
    UnsupportedKind { kind: &'static str, name: String },
    #[error("the gadget declares no data source (no GADGET_TRACER in its BTF)")]
    NoDataSource,
    #[error("data source {source_name}: map {map} is not declared with GADGET_TRACER_MAP")]
    NotATracerMap { source_name: String, map: String },
}

impl Operator for EbpfOperator {
    fn name(&self) -> &'static str {
        NAME
    }
    fn priority(&self) -> Priority {
        priority::EBPF
    }
    fn params(&self) -> Vec<ParamSpec> {
        self.params.iter().map(|p| p.spec.clone()).collect()
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
        Ok(())
    }

    fn instantiate(
        self: Box<Self>,
        setup: &mut Setup,
    ) -> Result<Option<Box<dyn Instance>>, OperatorError> {
        let fail = |e: Box<dyn std::error::Error + Send + Sync>| OperatorError::failed(NAME, e);
        let Self {
            object,
            info,
            btf,
            contract,
            metadata,
            options,
            globals,
            ..
        } = *self;
        if let Some(i) = contract.iters.first() {
            return Err(fail(
                EbpfError::UnsupportedKind {
                    kind: "snapshotter",
                    name: i.name.clone(),
                }
                .into(),
            ));
        }
        if let Some(m) = contract.map_iters.first() {
            return Err(fail(
                EbpfError::UnsupportedKind {
                    kind: "topper",
                    name: m.name.clone(),
                }
                .into(),
            ));
        }
        if contract.tracers.is_empty() {
            return Err(fail(EbpfError::NoDataSource.into()));
        }
        let mut tracers = Vec::new();
        for t in &contract.tracers {
            if !contract.tracer_maps.contains(&t.map) {
                return Err(fail(
                    EbpfError::NotATracerMap {
                        source_name: t.name.clone(),
                        map: t.map.clone(),
                    }
                    .into(),
                ));
            }
            let meta = metadata.datasources.get(&t.name);
            let (schema, warnings) =
                schema_from_btf(&btf, &t.name, &t.struct_name, SourceKind::Single, meta)
                    .map_err(|e| fail(e.into()))?;
            for w in warnings.0 {
                log::warn!("{w}");
            }
            tracers.push((t.clone(), setup.add_source(schema)));
        }
        Ok(Some(Box::new(EbpfInstance {
            object,
            info,
            contract,
            tracers,
            options,
            globals,
            loaded: None,
            readers: Vec::new(),
        })))
    }
}

struct Reader {
    source: SourceId,
    name: String,
    rb: RingBuffer,
    lost: Option<LostCounter>,
    event: Option<Event>,
}

struct EbpfInstance {
    object: Vec<u8>,
    info: ObjectInfo,
    contract: Contract,
    tracers: Vec<(Tracer, SourceId)>,
    options: EbpfOptions,
    globals: Vec<(String, Vec<u8>)>,
    loaded: Option<LoadedGadget>,
    readers: Vec<Reader>,
}

impl Instance for EbpfInstance {
    fn start(&mut self) -> Result<(), OperatorError> {
        let fail = |e: crate::bpf::loader::LoadError| OperatorError::failed(NAME, e);
        let mut globals = self.globals.clone();
        if let Some(t) = self.options.wakeup_threshold {
            globals.push((WAKEUP_THRESHOLD_VAR.to_owned(), t.to_ne_bytes().to_vec()));
        }
        let max_entries: Vec<(String, u32)> = match self.options.ringbuf_size {
            Some(n) => self
                .contract
                .tracer_maps
                .iter()
                .map(|m| (m.clone(), n))
                .collect(),
            None => Vec::new(),
        };
        let spec = LoadSpec {
            object: &self.object,
            info: &self.info,
            globals: &globals,
            max_entries: &max_entries,
        };
        let mut loaded = LoadedGadget::load(&spec).map_err(fail)?;
        for (t, id) in &self.tracers {
            let rb = loaded.ring_buffer(&t.map).map_err(fail)?;
            let lost = loaded.lost_counter(&t.map).map_err(fail)?;
            self.readers.push(Reader {
                source: *id,
                name: t.name.clone(),
                rb,
                lost,
                event: None,
            });
        }
        self.loaded = Some(loaded);
        Ok(())
    }

    fn stop(&mut self) -> Result<(), OperatorError> {
        // Dropping the readers and the object closes every fd: programs
        // detach and maps are freed.
        self.readers.clear();
        self.loaded = None;
        Ok(())
    }

    fn source(&mut self) -> Option<&mut dyn Source> {
        Some(self)
    }
}

impl Source for EbpfInstance {
    fn fds(&self) -> Vec<RawFd> {
        self.readers.iter().map(|r| r.rb.fd()).collect()
    }

    fn drain(&mut self, out: &mut Dispatch) -> Result<(), OperatorError> {
        for r in &mut self.readers {
            let ev = r
                .event
                .get_or_insert_with(|| Event::new(out.schema(r.source)));
            let id = r.source;
            r.rb.drain(|sample| {
                ev.set_raw(sample);
                out.event(id, ev);
            });
        }
        Ok(())
    }

    fn tick(&mut self, _out: &mut Dispatch) -> Result<Vec<Notice>, OperatorError> {
        let mut notices = Vec::new();
        for r in &mut self.readers {
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
}
