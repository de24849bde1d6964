//! Data sources, packets and arrays of events; subscriptions that run a
//! closure for each event (`dataSourceCallback` dispatches to them).
//!
//! Sources, fields and subscriptions are made in `gadgetInit`; packets
//! (events the guest emits) while the gadget runs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::helpers::string_to_buf_ptr;

#[derive(Debug)]
pub enum DataSourceError {
    NotFound(String),
    CreationFailed(String),
    SubscribingFailed,
    PacketCreationFailed,
    EmitFailed,
    ReleaseFailed,
    UnreferenceFailed,
    AddFieldFailed(String),
    AppendFailed,
    GeneralError,
}

impl std::fmt::Display for DataSourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotFound(n) => write!(f, "{n} not found"),
            Self::CreationFailed(n) => write!(f, "creating data source {n} failed"),
            Self::SubscribingFailed => f.write_str("subscribing failed"),
            Self::PacketCreationFailed => f.write_str("creating a packet failed"),
            Self::EmitFailed => f.write_str("emitting failed"),
            Self::ReleaseFailed => f.write_str("releasing failed"),
            Self::UnreferenceFailed => f.write_str("unreferencing failed"),
            Self::AddFieldFailed(n) => write!(f, "adding field {n} failed"),
            Self::AppendFailed => f.write_str("appending failed"),
            Self::GeneralError => f.write_str("data source error"),
        }
    }
}

impl std::error::Error for DataSourceError {}

pub type Result<T> = std::result::Result<T, DataSourceError>;

/// What a subscription receives (the host's numbering).
#[repr(u32)]
#[derive(Clone, Copy)]
enum SubscriptionType {
    Data = 1,
    Array = 2,
    Packet = 3,
}

#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataSourceType {
    Undefined = 0,
    Single = 1,
    Array = 2,
}

/// Field kinds (the host's numbering).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    Invalid = 0,
    Bool = 1,
    Int8 = 2,
    Int16 = 3,
    Int32 = 4,
    Int64 = 5,
    Uint8 = 6,
    Uint16 = 7,
    Uint32 = 8,
    Uint64 = 9,
    Float32 = 10,
    Float64 = 11,
    String = 12,
    CString = 13,
    Bytes = 14,
}

type DataFunc = Arc<dyn Fn(DataSource, Data) + Send + Sync + 'static>;
type DataArrayFunc = Arc<dyn Fn(DataSource, DataArray) -> Result<()> + Send + Sync + 'static>;
type PacketFunc = Arc<dyn Fn(DataSource, Packet) -> Result<()> + Send + Sync + 'static>;

/// A subscribed closure.
#[derive(Clone)]
pub enum CallBack {
    Data(DataFunc),
    Array(DataArrayFunc),
    Packet(PacketFunc),
}

#[link(wasm_import_module = "ig")]
extern "C" {
    #[link_name = "newDataSource"]
    fn ig_new_datasource(name: u64, typ: u32) -> u32;
    #[link_name = "getDataSource"]
    fn ig_get_datasource(name: u64) -> u32;
    #[link_name = "dataSourceSubscribe"]
    fn ig_subscribe(ds: u32, typ: u32, prio: u32, cb: u64) -> u32;
    #[link_name = "dataSourceGetField"]
    fn ig_get_field(ds: u32, name: u64) -> u32;
    #[link_name = "dataSourceAddField"]
    fn ig_add_field(ds: u32, name: u64, kind: u32) -> u32;
    #[link_name = "dataSourceNewPacketSingle"]
    fn ig_new_packet_single(ds: u32) -> u32;
    #[link_name = "dataSourceNewPacketArray"]
    fn ig_new_packet_array(ds: u32) -> u32;
    #[link_name = "dataSourceEmitAndRelease"]
    fn ig_emit_and_release(ds: u32, packet: u32) -> u32;
    #[link_name = "dataSourceRelease"]
    fn ig_release(ds: u32, packet: u32) -> u32;
    #[link_name = "dataSourceUnreference"]
    fn ig_unreference(ds: u32) -> u32;
    #[link_name = "dataSourceIsReferenced"]
    fn ig_is_referenced(ds: u32) -> u32;
    #[link_name = "dataArrayNew"]
    fn ig_array_new(array: u32) -> u32;
    #[link_name = "dataArrayAppend"]
    fn ig_array_append(array: u32, data: u32) -> u32;
    #[link_name = "dataArrayRelease"]
    fn ig_array_release(array: u32, data: u32) -> u32;
    #[link_name = "dataArrayLen"]
    fn ig_array_len(array: u32) -> u32;
    #[link_name = "dataArrayGet"]
    fn ig_array_get(array: u32, index: u32) -> u32;
}

/// Subscriptions by the id the host calls back with.
static SUBSCRIPTIONS: Mutex<(u64, BTreeMap<u64, CallBack>)> = Mutex::new((0, BTreeMap::new()));

#[derive(Clone, Copy, Debug)]
pub struct DataSource(pub u32);
/// An event or array being emitted.
#[derive(Clone, Copy, Debug)]
pub struct Packet(pub u32);
#[derive(Clone, Copy, Debug)]
pub struct Field(pub u32);
/// One event.
#[derive(Clone, Copy, Debug)]
pub struct Data(pub u32);
/// The events of an array source (a snapshot).
#[derive(Clone, Copy, Debug)]
pub struct DataArray(pub u32);
#[derive(Clone, Copy, Debug)]
pub struct PacketSingle(pub u32);
#[derive(Clone, Copy, Debug)]
pub struct PacketArray(pub u32);

impl From<PacketSingle> for Packet {
    fn from(p: PacketSingle) -> Self {
        Packet(p.0)
    }
}
impl From<PacketSingle> for Data {
    fn from(p: PacketSingle) -> Self {
        Data(p.0)
    }
}
impl From<PacketArray> for Packet {
    fn from(p: PacketArray) -> Self {
        Packet(p.0)
    }
}
impl From<PacketArray> for DataArray {
    fn from(p: PacketArray) -> Self {
        DataArray(p.0)
    }
}

fn status(ret: u32, err: DataSourceError) -> Result<()> {
    if ret == 0 {
        Ok(())
    } else {
        Err(err)
    }
}

impl DataSource {
    /// A new data source the guest emits on (in `gadgetInit`).
    pub fn new_datasource(name: String, typ: DataSourceType) -> Result<Self> {
        // SAFETY: `name` outlives the call; the host only reads it.
        match unsafe { ig_new_datasource(string_to_buf_ptr(&name).0, typ as u32) } {
            0 => Err(DataSourceError::CreationFailed(name)),
            h => Ok(Self(h)),
        }
    }

    /// A data source of the gadget (or one another operator made).
    pub fn get_datasource(name: String) -> Result<Self> {
        // SAFETY: as above.
        match unsafe { ig_get_datasource(string_to_buf_ptr(&name).0) } {
            0 => Err(DataSourceError::NotFound(name)),
            h => Ok(Self(h)),
        }
    }

    fn register(&self, typ: SubscriptionType, prio: u32, cb: CallBack) -> Result<()> {
        let id = {
            let mut subs = SUBSCRIPTIONS.lock().unwrap_or_else(|e| e.into_inner());
            subs.0 += 1;
            let id = subs.0;
            subs.1.insert(id, cb);
            id
        };
        // SAFETY: a plain call without pointers.
        let ret = unsafe { ig_subscribe(self.0, typ as u32, prio, id) };
        if ret != 0 {
            let mut subs = SUBSCRIPTIONS.lock().unwrap_or_else(|e| e.into_inner());
            subs.1.remove(&id);
            return Err(DataSourceError::SubscribingFailed);
        }
        Ok(())
    }

    /// Run `cb` for every event (every element of an array source), in
    /// priority order with the other handlers (lower first; the gadget's
    /// own run at 0). A negative priority is passed as its two's
    /// complement (`-5i32 as u32`).
    pub fn subscribe<F>(&self, cb: F, prio: u32) -> Result<()>
    where
        F: Fn(DataSource, Data) + Send + Sync + 'static,
    {
        self.register(SubscriptionType::Data, prio, CallBack::Data(Arc::new(cb)))
    }

    /// Run `cb` for every array of an array source.
    pub fn subscribe_array<F>(&self, cb: F, prio: u32) -> Result<()>
    where
        F: Fn(DataSource, DataArray) -> Result<()> + Send + Sync + 'static,
    {
        self.register(SubscriptionType::Array, prio, CallBack::Array(Arc::new(cb)))
    }

    /// Run `cb` for every packet (an event, or an array of an array
    /// source).
    pub fn subscribe_packet<F>(&self, cb: F, prio: u32) -> Result<()>
    where
        F: Fn(DataSource, Packet) -> Result<()> + Send + Sync + 'static,
    {
        self.register(
            SubscriptionType::Packet,
            prio,
            CallBack::Packet(Arc::new(cb)),
        )
    }

    pub fn get_field(&self, name: &str) -> Result<Field> {
        // SAFETY: `name` outlives the call; the host only reads it.
        match unsafe { ig_get_field(self.0, string_to_buf_ptr(name).0) } {
            0 => Err(DataSourceError::NotFound(name.to_string())),
            h => Ok(Field(h)),
        }
    }

    /// A new field of the source (in `gadgetInit`).
    pub fn add_field(&self, name: &str, kind: FieldKind) -> Result<Field> {
        // SAFETY: as above.
        match unsafe { ig_add_field(self.0, string_to_buf_ptr(name).0, kind as u32) } {
            0 => Err(DataSourceError::AddFieldFailed(name.to_string())),
            h => Ok(Field(h)),
        }
    }

    pub fn new_packet_single(&self) -> Result<PacketSingle> {
        // SAFETY: a plain call without pointers.
        match unsafe { ig_new_packet_single(self.0) } {
            0 => Err(DataSourceError::PacketCreationFailed),
            h => Ok(PacketSingle(h)),
        }
    }

    pub fn new_packet_array(&self) -> Result<PacketArray> {
        // SAFETY: a plain call without pointers.
        match unsafe { ig_new_packet_array(self.0) } {
            0 => Err(DataSourceError::PacketCreationFailed),
            h => Ok(PacketArray(h)),
        }
    }

    /// Send the packet down the source's chain; its handle is gone.
    pub fn emit_and_release(&self, packet: Packet) -> Result<()> {
        // SAFETY: a plain call without pointers.
        status(
            unsafe { ig_emit_and_release(self.0, packet.0) },
            DataSourceError::EmitFailed,
        )
    }

    /// Drop a packet without emitting it.
    pub fn release(&self, packet: Packet) -> Result<()> {
        // SAFETY: a plain call without pointers.
        status(
            unsafe { ig_release(self.0, packet.0) },
            DataSourceError::ReleaseFailed,
        )
    }

    /// Keep this source from the operators after the guest (the output
    /// among them): for a source the guest consumes and turns into
    /// another (in `gadgetInit`).
    pub fn unreference(&self) -> Result<()> {
        // SAFETY: a plain call without pointers.
        status(
            unsafe { ig_unreference(self.0) },
            DataSourceError::UnreferenceFailed,
        )
    }

    pub fn is_referenced(&self) -> bool {
        // SAFETY: a plain call without pointers.
        unsafe { ig_is_referenced(self.0) == 1 }
    }
}

impl DataArray {
    /// A new element, appended with [`DataArray::append`] or dropped with
    /// [`DataArray::release`]. `Data(0)` when the host refuses.
    #[allow(clippy::new_ret_no_self, clippy::wrong_self_convention)]
    pub fn new(&self) -> Data {
        // SAFETY: a plain call without pointers.
        Data(unsafe { ig_array_new(self.0) })
    }

    pub fn append(&mut self, data: Data) -> Result<()> {
        // SAFETY: a plain call without pointers.
        status(
            unsafe { ig_array_append(self.0, data.0) },
            DataSourceError::AppendFailed,
        )
    }

    pub fn release(&self, data: Data) -> Result<()> {
        // SAFETY: a plain call without pointers.
        status(
            unsafe { ig_array_release(self.0, data.0) },
            DataSourceError::ReleaseFailed,
        )
    }

    pub fn len(&self) -> usize {
        // SAFETY: a plain call without pointers.
        unsafe { ig_array_len(self.0) as usize }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `index` (`Data(0)` out of range).
    pub fn get(&self, index: usize) -> Data {
        // SAFETY: a plain call without pointers.
        Data(unsafe { ig_array_get(self.0, index as u32) })
    }
}

/// Called by the host for every subscription: finds the closure by its id
/// and runs it. The lock is not held while it runs, so a closure may use
/// the whole API.
#[no_mangle]
#[allow(non_snake_case)]
pub extern "C" fn dataSourceCallback(cb_id: u64, ds: u32, data: u32) {
    let cb = {
        let subs = SUBSCRIPTIONS.lock().unwrap_or_else(|e| e.into_inner());
        subs.1.get(&cb_id).cloned()
    };
    match cb {
        Some(CallBack::Data(f)) => f(DataSource(ds), Data(data)),
        Some(CallBack::Array(f)) => {
            let _ = f(DataSource(ds), DataArray(data));
        }
        Some(CallBack::Packet(f)) => {
            let _ = f(DataSource(ds), Packet(data));
        }
        None => {}
    }
}
