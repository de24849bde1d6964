//! Embedding ig in a program without async: run the store's `trace_exec`
//! for 5 s and print its exec events as JSON lines, received on a plain
//! thread (this one) through the run's bounded channel.
//!
//! ```sh
//! cargo build --example embed_thread
//! sudo IG_STORE=/var/lib/ig/oci-store ./target/debug/examples/embed_thread
//! ```
//!
//! Needs root (or CAP_BPF and CAP_PERFMON) and `trace_exec` in the store
//! (`ig image build gadgets/trace_exec`, or it is pulled). The store is
//! ig's default unless `IG_STORE` names another: the program picks it, the
//! library reads no environment. See docs/library.md.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "an example program reports on its terminal"
)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ig::run::{Event, GadgetRun, RunEvent, Schema, ValueRef, error_chain};

fn main() -> ExitCode {
    let store = std::env::var_os("IG_STORE")
        .map_or_else(|| PathBuf::from(ig::run::DEFAULT_STORE), PathBuf::from);
    let mut run = GadgetRun::from_store(store, "trace_exec");
    // Events after the run's filters, copied into a channel of 4096
    // entries; when it is full they are dropped and counted, never
    // waited for.
    let mut events = run.event_channel(4096);
    // The run gets a thread of its own; checks (image, privileges) and
    // the load happen there, and `join` says how it went.
    let handle = match run.spawn() {
        Ok(h) => h,
        Err(e) => return fail(&e),
    };
    // The stop handle is Clone + Send + Sync: any thread may stop the run.
    let stop = handle.stop_handle();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(5));
        stop.stop();
    });
    let mut out = std::io::stdout().lock();
    // `None` once the run has ended and everything it sent was taken.
    while let Some(item) = events.recv_blocking() {
        match item {
            RunEvent::Event { schema, event } => {
                let line = to_json(&schema, &event);
                if writeln!(out, "{line}").is_err() {
                    // Our reader went away: dropping `events` ends the run.
                    break;
                }
            }
            RunEvent::Notice(n) => eprintln!("notice: {n:?}"),
            RunEvent::Started { .. } | RunEvent::Array { .. } => {}
        }
    }
    drop(events);
    match handle.join() {
        Ok(summary) => {
            eprintln!(
                "stopped ({:?}); events lost: {}",
                summary.reason,
                summary.losses.total()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// The event as a JSON object of its fields by full name
/// (`{"proc.comm":"cat",...}`), leaving out what the printers hide.
fn to_json(schema: &Schema, event: &Event) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    for field in schema.fields().iter().filter(|f| !f.hidden) {
        let value = match event.get(field) {
            ValueRef::None => continue,
            ValueRef::Bool(b) => b.into(),
            ValueRef::U64(n) => n.into(),
            ValueRef::I64(n) => n.into(),
            ValueRef::F64(x) => x.into(),
            ValueRef::Str(s) => String::from_utf8_lossy(s).into(),
            ValueRef::Bytes(b) => b.to_vec().into(),
        };
        object.insert(field.name.clone(), value);
    }
    object.into()
}

fn fail(e: &(dyn std::error::Error + 'static)) -> ExitCode {
    eprintln!("error: {}", error_chain(e));
    ExitCode::FAILURE
}
