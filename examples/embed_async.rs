//! Embedding ig in an async program: a tokio program that runs a gadget
//! (`trace_exec` unless named) until Ctrl-C, which it turns into a stop
//! through the run's stop handle, printing a line per event.
//!
//! ```sh
//! cargo build --example embed_async
//! sudo ./target/debug/examples/embed_async [IMAGE]
//! ```
//!
//! The store is ig's default unless `IG_STORE` names another. The run has
//! a thread of its own; this program's runtime only awaits its events. See
//! docs/library.md.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "an example program reports on its terminal"
)]

use std::path::PathBuf;
use std::process::ExitCode;

use ig::run::{GadgetRun, RunEvent, Schema, ValueRef, error_chain};

fn main() -> ExitCode {
    // The run needs no runtime of its own: any executor can await its
    // channel. A current-thread runtime is enough here.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run())
}

async fn run() -> ExitCode {
    let store = std::env::var_os("IG_STORE")
        .map_or_else(|| PathBuf::from(ig::run::DEFAULT_STORE), PathBuf::from);
    let image = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "trace_exec".into());
    let mut run = GadgetRun::from_store(store, image);
    let mut events = run.event_channel(4096);
    let handle = match run.spawn() {
        Ok(h) => h,
        Err(e) => return fail(&e),
    };
    // Ctrl-C (or SIGINT from anyone) asks the run to stop: it drains what
    // the kernel holds, unloads everything and closes the channel.
    let stop = handle.stop_handle();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            stop.stop();
        }
    });
    while let Some(item) = events.recv().await {
        match item {
            RunEvent::Started { sources } => {
                let names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
                eprintln!("running; data sources: {}", names.join(", "));
            }
            RunEvent::Event { schema, event } => {
                println!("{}", line(&schema, |f| event.get(f)));
            }
            RunEvent::Array { schema, events } => {
                for e in &events {
                    println!("{}", line(&schema, |f| e.get(f)));
                }
            }
            RunEvent::Notice(n) => eprintln!("notice: {n:?}"),
        }
    }
    // `join` waits for the run's thread: off the runtime's thread. (The
    // error is boxed to cross the task: it carries the references and
    // paths it names by value.)
    match tokio::task::spawn_blocking(move || handle.join().map_err(Box::new)).await {
        Ok(Ok(summary)) => {
            eprintln!(
                "stopped ({:?}); events lost: {}",
                summary.reason,
                summary.losses.total()
            );
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => fail(&e),
        Err(e) => {
            eprintln!("error: waiting for the run: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `comm=cat pid=42 ...`: the event's process fields, when it has them,
/// else its first few fields.
fn line<'a>(schema: &Schema, get: impl Fn(&ig::run::FieldDef) -> ValueRef<'a>) -> String {
    let wanted = ["proc.comm", "proc.pid", "args", "fname", "comm", "pid"];
    let mut fields: Vec<_> = wanted
        .iter()
        .filter_map(|n| schema.field_by_name(n))
        .map(|id| schema.field(id))
        .collect();
    if fields.is_empty() {
        fields = schema
            .fields()
            .iter()
            .filter(|f| !f.hidden)
            .take(4)
            .collect();
    }
    let mut out = String::new();
    for f in fields {
        let text = match get(f) {
            ValueRef::None => continue,
            ValueRef::Bool(b) => b.to_string(),
            ValueRef::U64(n) => n.to_string(),
            ValueRef::I64(n) => n.to_string(),
            ValueRef::F64(x) => x.to_string(),
            ValueRef::Str(s) => String::from_utf8_lossy(s).into_owned(),
            ValueRef::Bytes(b) => format!("{} bytes", b.len()),
        };
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&format!("{}={text}", f.short_name()));
    }
    out
}

fn fail(e: &(dyn std::error::Error + 'static)) -> ExitCode {
    eprintln!("error: {}", error_chain(e));
    ExitCode::FAILURE
}
