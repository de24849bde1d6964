//! Messages for people go to stderr as `error: ...`, `warning: ...`; data
//! goes to stdout. `-v` turns on debug messages.

use std::io::Write as _;

struct Stderr;

impl log::Log for Stderr {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        // `-v` is about ig; libraries' debug chatter (aya's feature probes)
        // only shows with `-vv`.
        let ours = m.target() == "ig" || m.target().starts_with("ig::");
        // wasmtime-wasi traces every WASI call of a guest at info.
        let wasi_trace = m.target().starts_with("wasmtime_wasi") && m.level() > log::Level::Warn;
        m.level() <= log::max_level()
            && (ours
                || (m.level() <= log::Level::Info && !wasi_trace)
                || log::max_level() == log::LevelFilter::Trace)
    }
    fn log(&self, r: &log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let level = match r.level() {
            log::Level::Error => "error",
            log::Level::Warn => "warning",
            log::Level::Info => "info",
            log::Level::Debug => "debug",
            log::Level::Trace => "trace",
        };
        let _ = writeln!(std::io::stderr().lock(), "{level}: {}", r.args());
    }
    fn flush(&self) {}
}

pub fn init(verbose: u8) {
    let _ = log::set_logger(&Stderr);
    log::set_max_level(match verbose {
        0 => log::LevelFilter::Info,
        1 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    });
}

pub fn error(msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "error: {msg}");
}

pub fn hint(msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "hint: {msg}");
}

/// One line of data on stdout. A closed stdout is not an error worth a
/// message (`ig image list | head -1`).
pub fn stdout_line(s: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{s}");
}
