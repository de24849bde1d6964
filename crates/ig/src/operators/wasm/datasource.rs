//! Data sources, packets and arrays: `newDataSource`, `getDataSource`,
//! `dataSourceSubscribe`, `dataSourceGetField`, `dataSourceAddField`,
//! `dataSourceNewPacketSingle/Array`, `dataSourceEmitAndRelease`,
//! `dataSourceRelease`, `dataSourceUnreference`, `dataSourceIsReferenced`,
//! `dataArray*` and `releaseHandle`.
//!
//! Until `gadgetInit` returns, sources, fields, subscriptions and
//! unreferenced sources (kept from the operators after the guest, the
//! output among them, as upstream: a guest that turns one source into
//! another hides the first) are
//! recorded ([`SetupOp`]) against a mirror of the run's schemas and applied
//! to the pipeline afterwards; later sources and fields are refused
//! (schemas are frozen once the run starts, Architecture Invariant 3).
//! Subscriptions are still taken in `gadgetPreStart` and `gadgetStart`
//! (upstream's traceloop subscribes in `gadgetStart`), as [`LateSub`]s:
//! the operator's handler for late subscriptions, in every source's chain
//! at the operator's priority, calls them in the order of their own
//! priorities. Emitted packets are
//! queued and handed to their source's chain by the operator's `tick`.
//! Packets and elements are charged to the host-side budget (see
//! `state`): creating one past it answers the error handle 0.

use wasmtime::{Caller, Linker};

use super::state::{
    ArrayRef, DataRef, DsMirror, Handle, HostState, LateSub, Loose, SetupOp, SubType,
    kind_from_api, read_str,
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
                referenced: true,
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
        // The priority is an i32 on the wire, as upstream reads it
        // (`DecodeI32`, then Go's `int`): guests pass negative priorities
        // as their two's complement, so it is taken as signed, unchanged.
        |mut c: Caller<'_, HostState>, ds: u32, typ: u32, prio: i32, cb: u64| -> u32 {
            let late = c.data().frozen;
            if late && !c.data().accepting_late {
                // Once: a guest may try in every callback.
                c.data_mut().warn_once(
                    "late dataSourceSubscribe",
                    format_args!(
                        "dataSourceSubscribe is only possible in gadgetInit, gadgetPreStart and gadgetStart"
                    ),
                );
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
            // Upstream's numbering (wasmapi's subscriptionType); 0 is
            // invalid there.
            let ty = match typ {
                1 => SubType::Data,
                2 => SubType::Array,
                3 => SubType::Packet,
                _ => {
                    s.warn(format_args!(
                        "dataSourceSubscribe: unknown subscription type {typ} (1: data, 2: array, 3: packet)"
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
            if late {
                if src >= s.late_sources {
                    s.warn(format_args!(
                        "dataSourceSubscribe: data source {} was made after gadgetInit; subscribe to it there",
                        s.sources[src].name
                    ));
                    return 1;
                }
                // After the subscriptions of lower or equal priority, as
                // a chain orders its handlers.
                let at = s.late.partition_point(|l| l.prio <= prio);
                s.late.insert(
                    at,
                    LateSub {
                        src,
                        ty,
                        prio,
                        cb,
                        ds_handle: ds,
                    },
                );
                s.late_version += 1;
                return 0;
            }
            s.ops.push(SetupOp::Subscribe {
                src,
                ty,
                prio,
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
            // Its charge moves with it until the tick delivers it.
            if let Some(p) = s.packets.remove(&id) {
                s.emitted.push(p);
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
                    s.drop_packet(id);
                    0
                }
                _ => 1,
            }
        },
    )?;
    linker.func_wrap(
        "ig",
        "dataSourceUnreference",
        |mut c: Caller<'_, HostState>, ds: u32| -> u32 {
            let s = c.data_mut();
            let Some(src) = s.source(ds) else {
                return 1;
            };
            if s.frozen {
                // Upstream answers 0 here too; the operators after the
                // guest were set up already.
                let name = s.sources[src].name.clone();
                s.warn_once(
                    "dataSourceUnreference late",
                    format_args!(
                        "dataSourceUnreference of {name} after gadgetInit changes nothing (the operators after the guest are set up)"
                    ),
                );
                return 0;
            }
            if s.sources[src].referenced {
                s.sources[src].referenced = false;
                s.ops.push(SetupOp::Unreference { src });
            }
            0
        },
    )?;
    linker.func_wrap(
        "ig",
        "dataSourceIsReferenced",
        |c: Caller<'_, HostState>, ds: u32| -> u32 {
            let s = c.data();
            match s.source(ds) {
                Some(src) => u32::from(s.sources[src].referenced),
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
            let Some((event, charge)) = s.new_event(src) else {
                return 0;
            };
            if !s.charge(charge) {
                s.refused += 1;
                return 0;
            }
            let id = s.new_packet_id();
            s.loose.insert(id, Loose { event, charge });
            let h = s.add_handle(Handle::Data(src, DataRef::Loose(id)));
            if h == 0 {
                s.drop_loose(id);
            }
            h
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
            if asrc != dsrc || s.array_mut(a).is_none() || !s.loose.contains_key(&id) {
                return 1;
            }
            let charge = s.loose[&id].charge;
            // The element's charge moves with it: to the packet it joins,
            // or, joining the pipeline's array, off the budget and onto
            // this callback's growth.
            match a {
                ArrayRef::Packet(p) => {
                    if let Some(p) = s.packets.get_mut(&p) {
                        p.charge += charge;
                    }
                }
                ArrayRef::Current => {
                    if !s.grow(DataRef::Current, charge) {
                        return 1;
                    }
                    s.refund(charge);
                }
            }
            let Some(l) = s.loose.remove(&id) else {
                return 1;
            };
            s.remove_handle(data);
            if let Some(v) = s.array_mut(a) {
                v.push(l.event);
            }
            0
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
                    s.drop_loose(id);
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
            let s = c.data_mut();
            match s.remove_handle(h) {
                // What the handle alone kept alive goes with it.
                Some(Handle::Packet(_, id)) => {
                    s.drop_packet(id);
                    0
                }
                Some(Handle::Data(_, DataRef::Loose(id))) => {
                    s.drop_loose(id);
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
    match s.source(ds) {
        Some(src) => s.new_packet(src, array),
        None => 0,
    }
}
