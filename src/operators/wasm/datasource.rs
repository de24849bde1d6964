//! Data sources, packets and arrays: `newDataSource`, `getDataSource`,
//! `dataSourceSubscribe`, `dataSourceGetField`, `dataSourceAddField`,
//! `dataSourceNewPacketSingle/Array`, `dataSourceEmitAndRelease`,
//! `dataSourceRelease`, `dataSourceIsReferenced`, `dataArray*` and
//! `releaseHandle`.
//!
//! Until `gadgetInit` returns, sources, fields and subscriptions are
//! recorded ([`SetupOp`]) against a mirror of the run's schemas and applied
//! to the pipeline afterwards; later they are refused (schemas are frozen
//! once the run starts, Architecture Invariant 3). Emitted packets are
//! queued and handed to their source's chain by the operator's `tick`.

use wasmtime::{Caller, Linker};

use super::state::{
    ArrayRef, Body, DataRef, DsMirror, Handle, HostState, SetupOp, SubType, kind_from_api, read_str,
};
use crate::datasource::{FieldId, SourceKind};

fn frozen(c: &Caller<'_, HostState>, func: &str) -> bool {
    if c.data().frozen {
        c.data().warn(format_args!(
            "{func} is only possible in gadgetInit (the data sources are fixed once the gadget starts)"
        ));
    }
    c.data().frozen
}

pub(super) fn add(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "ig",
        "newDataSource",
        |mut c: Caller<'_, HostState>, name: u64, typ: u32| -> u32 {
            let Some(name) = read_str(&mut c, name, "newDataSource") else {
                return 0;
            };
            if frozen(&c, "newDataSource") {
                return 0;
            }
            let kind = match typ {
                0 | 1 => SourceKind::Single,
                2 => SourceKind::Array,
                _ => {
                    c.data().warn(format_args!(
                        "newDataSource {name}: unsupported data source type {typ} (1: single, 2: array)"
                    ));
                    return 0;
                }
            };
            let s = c.data_mut();
            if s.sources.iter().any(|d| d.name == name) {
                s.warn(format_args!("newDataSource: data source {name} already exists"));
                return 0;
            }
            s.sources.push(DsMirror {
                name: name.clone(),
                kind,
                fields: Vec::new(),
            });
            s.ops.push(SetupOp::NewSource { name, kind });
            let idx = s.sources.len() - 1;
            s.add_handle(Handle::Source(idx))
        },
    )?;
    linker.func_wrap(
        "ig",
        "getDataSource",
        |mut c: Caller<'_, HostState>, name: u64| -> u32 {
            let Some(name) = read_str(&mut c, name, "getDataSource") else {
                return 0;
            };
            let s = c.data_mut();
            match s.sources.iter().position(|d| d.name == name) {
                Some(i) => s.add_handle(Handle::Source(i)),
                None => {
                    s.warn(format_args!("getDataSource: no data source {name:?}"));
                    0
                }
            }
        },
    )?;
    linker.func_wrap(
        "ig",
        "dataSourceSubscribe",
        |mut c: Caller<'_, HostState>, ds: u32, typ: u32, prio: u32, cb: u64| -> u32 {
            if frozen(&c, "dataSourceSubscribe") {
                return 1;
            }
            let s = c.data_mut();
            if !s.has_callback {
                s.warn(format_args!(
                    "dataSourceSubscribe: the module does not export dataSourceCallback"
                ));
                return 1;
            }
            let Some(src) = s.source(ds) else {
                return 1;
            };
            let ty = match typ {
                0 => SubType::Data,
                1 => SubType::Array,
                2 => SubType::Packet,
                _ => {
                    s.warn(format_args!(
                        "dataSourceSubscribe: unknown subscription type {typ} (0: data, 1: array, 2: packet)"
                    ));
                    return 1;
                }
            };
            if ty == SubType::Array && s.sources[src].kind != SourceKind::Array {
                s.warn(format_args!(
                    "dataSourceSubscribe: {} is not an array data source",
                    s.sources[src].name
                ));
                return 1;
            }
            s.ops.push(SetupOp::Subscribe {
                src,
                ty,
                prio: prio as i32,
                cb,
                ds_handle: ds,
            });
            0
        },
    )?;
    linker.func_wrap(
        "ig",
        "dataSourceGetField",
        |mut c: Caller<'_, HostState>, ds: u32, name: u64| -> u32 {
            let Some(name) = read_str(&mut c, name, "dataSourceGetField") else {
                return 0;
            };
            let s = c.data_mut();
            let Some(src) = s.source(ds) else {
                return 0;
            };
            let found = match s.schemas.get(src) {
                Some(schema) => schema.field_by_name(&name),
                None => s.sources[src]
                    .fields
                    .iter()
                    .position(|(n, _)| *n == name)
                    .map(|i| FieldId(i as u16)),
            };
            match found {
                Some(f) => s.add_handle(Handle::Field(src, f)),
                None => {
                    s.warn(format_args!(
                        "dataSourceGetField: data source {} has no field {name:?}",
                        s.sources[src].name
                    ));
                    0
                }
            }
        },
    )?;
    linker.func_wrap(
        "ig",
        "dataSourceAddField",
        |mut c: Caller<'_, HostState>, ds: u32, name: u64, kind: u32| -> u32 {
            let Some(name) = read_str(&mut c, name, "dataSourceAddField") else {
                return 0;
            };
            if frozen(&c, "dataSourceAddField") {
                return 0;
            }
            let s = c.data_mut();
            let Some(src) = s.source(ds) else {
                return 0;
            };
            let Some(kind) = kind_from_api(kind) else {
                s.warn(format_args!(
                    "dataSourceAddField {name}: invalid field kind {kind}"
                ));
                return 0;
            };
            let m = &mut s.sources[src];
            if name.is_empty() || m.fields.iter().any(|(n, _)| *n == name) {
                let ds_name = m.name.clone();
                s.warn(format_args!(
                    "dataSourceAddField: data source {ds_name} already has a field {name:?}"
                ));
                return 0;
            }
            if m.fields.len() >= usize::from(u16::MAX - 2) {
                return 0;
            }
            let id = FieldId(m.fields.len() as u16);
            m.fields.push((name.clone(), kind));
            s.ops.push(SetupOp::AddField { src, name, kind });
            s.add_handle(Handle::Field(src, id))
        },
    )?;
    linker.func_wrap(
        "ig",
        "dataSourceNewPacketSingle",
        |mut c: Caller<'_, HostState>, ds: u32| -> u32 { new_packet(&mut c, ds, false) },
    )?;
    linker.func_wrap(
        "ig",
        "dataSourceNewPacketArray",
        |mut c: Caller<'_, HostState>, ds: u32| -> u32 { new_packet(&mut c, ds, true) },
    )?;
    linker.func_wrap(
        "ig",
        "dataSourceEmitAndRelease",
        |mut c: Caller<'_, HostState>, ds: u32, pkt: u32| -> u32 {
            let s = c.data_mut();
            let Some(src) = s.source(ds) else {
                return 1;
            };
            let Some(Handle::Packet(psrc, id)) = s.handle(pkt) else {
                s.warn(format_args!(
                    "dataSourceEmitAndRelease: {pkt} is not a packet"
                ));
                return 1;
            };
            if psrc != src {
                s.warn(format_args!(
                    "dataSourceEmitAndRelease: the packet belongs to another data source"
                ));
                return 1;
            }
            s.remove_handle(pkt);
            if let Some((src, body)) = s.packets.remove(&id) {
                s.emitted.push((src, body));
            }
            0
        },
    )?;
    linker.func_wrap(
        "ig",
        "dataSourceRelease",
        |mut c: Caller<'_, HostState>, ds: u32, pkt: u32| -> u32 {
            let s = c.data_mut();
            if s.source(ds).is_none() {
                return 1;
            }
            match s.handle(pkt) {
                Some(Handle::Packet(_, id)) => {
                    s.remove_handle(pkt);
                    s.packets.remove(&id);
                    0
                }
                _ => 1,
            }
        },
    )?;
    linker.func_wrap(
        "ig",
        "dataSourceIsReferenced",
        |c: Caller<'_, HostState>, ds: u32| -> u32 {
            // Every data source reaches the output operator here.
            match c.data().source(ds) {
                Some(_) => 1,
                None => 2,
            }
        },
    )?;
    linker.func_wrap(
        "ig",
        "dataArrayNew",
        |mut c: Caller<'_, HostState>, arr: u32| -> u32 {
            let s = c.data_mut();
            let Some((src, _)) = s.array(arr) else {
                return 0;
            };
            let Some(ev) = s.new_event(src) else {
                return 0;
            };
            let id = s.new_packet_id();
            s.loose.insert(id, ev);
            s.add_handle(Handle::Data(src, DataRef::Loose(id)))
        },
    )?;
    linker.func_wrap(
        "ig",
        "dataArrayAppend",
        |mut c: Caller<'_, HostState>, arr: u32, data: u32| -> u32 {
            let s = c.data_mut();
            let (Some((asrc, a)), Some((dsrc, DataRef::Loose(id)))) = (s.array(arr), s.data(data))
            else {
                s.warn(format_args!(
                    "dataArrayAppend: needs an array and an element made by dataArrayNew"
                ));
                return 1;
            };
            if asrc != dsrc {
                return 1;
            }
            let Some(ev) = s.loose.remove(&id) else {
                return 1;
            };
            s.remove_handle(data);
            match s.array_mut(a) {
                Some(v) => {
                    v.push(ev);
                    0
                }
                None => 1,
            }
        },
    )?;
    linker.func_wrap(
        "ig",
        "dataArrayRelease",
        |mut c: Caller<'_, HostState>, arr: u32, data: u32| -> u32 {
            let s = c.data_mut();
            if s.array(arr).is_none() {
                return 1;
            }
            match s.data(data) {
                Some((_, DataRef::Loose(id))) => {
                    s.loose.remove(&id);
                    s.remove_handle(data);
                    0
                }
                _ => 1,
            }
        },
    )?;
    linker.func_wrap(
        "ig",
        "dataArrayLen",
        |mut c: Caller<'_, HostState>, arr: u32| -> u32 {
            let s = c.data_mut();
            let Some((_, a)) = s.array(arr) else {
                return 0;
            };
            s.array_mut(a).map_or(0, |v| v.len() as u32)
        },
    )?;
    linker.func_wrap(
        "ig",
        "dataArrayGet",
        |mut c: Caller<'_, HostState>, arr: u32, index: u32| -> u32 {
            let s = c.data_mut();
            let Some((src, a)) = s.array(arr) else {
                return 0;
            };
            let i = index as usize;
            if s.array_mut(a).is_none_or(|v| i >= v.len()) {
                s.warn(format_args!("dataArrayGet: index {index} out of range"));
                return 0;
            }
            let d = match a {
                ArrayRef::Current => DataRef::CurrentElem(i),
                ArrayRef::Packet(p) => DataRef::PacketElem(p, i),
            };
            s.add_handle(Handle::Data(src, d))
        },
    )?;
    linker.func_wrap(
        "ig",
        "releaseHandle",
        |mut c: Caller<'_, HostState>, h: u32| -> u32 {
            match c.data_mut().remove_handle(h) {
                Some(Handle::Packet(_, id)) => {
                    c.data_mut().packets.remove(&id);
                    0
                }
                Some(_) => 0,
                None => 1,
            }
        },
    )?;
    Ok(())
}

fn new_packet(c: &mut Caller<'_, HostState>, ds: u32, array: bool) -> u32 {
    let s = c.data_mut();
    let Some(src) = s.source(ds) else {
        return 0;
    };
    let Some(ev) = s.new_event(src) else {
        s.warn(format_args!(
            "packets can be created once the gadget runs (in a callback), not before"
        ));
        return 0;
    };
    let body = if array {
        Body::Array(Vec::new())
    } else {
        Body::Single(ev)
    };
    let id = s.new_packet_id();
    s.packets.insert(id, (src, body));
    let h = s.add_handle(Handle::Packet(src, id));
    if h == 0 {
        s.packets.remove(&id);
    }
    h
}
