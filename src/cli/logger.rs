//! Messages for people go to stderr as `error: ...`, `warning: ...`; data
//! goes to stdout, so `ig ... | jq` never sees a message. `-v` turns on
//! debug messages (ig's own), `-vv` also libraries' and trace messages.
//!
//! Color: the level word (`error`, `warning`, `hint`, `debug`) is colored
//! when stderr is a terminal, as clap colors its help and usage errors;
//! never when `NO_COLOR` is set to anything non-empty (no-color.org) or
//! `TERM=dumb`. Data on stdout is never colored: it is meant for pipes and
//! files, and tables stay aligned in every pager.

use std::io::{IsTerminal as _, Write as _};
use std::sync::OnceLock;

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
            log::Level::Error => Level::Error,
            log::Level::Warn => Level::Warning,
            log::Level::Info => Level::Info,
            log::Level::Debug => Level::Debug,
            log::Level::Trace => Level::Trace,
        };
        line(level, &r.args().to_string());
    }
    fn flush(&self) {}
}

#[derive(Debug, Clone, Copy)]
enum Level {
    Error,
    Warning,
    Hint,
    Info,
    Debug,
    Trace,
}

impl Level {
    fn word(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Hint => "hint",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        }
    }
    /// SGR parameters: bold red, bold yellow, bold cyan, green, dim.
    fn sgr(self) -> &'static str {
        match self {
            Level::Error => "1;31",
            Level::Warning => "1;33",
            Level::Hint => "1;36",
            Level::Info => "32",
            Level::Debug | Level::Trace => "2",
        }
    }
}

/// Whether stderr gets color: a terminal, `NO_COLOR` unset or empty, and
/// not `TERM=dumb`. Decided once per process.
fn color() -> bool {
    static COLOR: OnceLock<bool> = OnceLock::new();
    *COLOR.get_or_init(|| {
        wants_color(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
            std::env::var_os("TERM").as_deref(),
        )
    })
}

fn wants_color(
    terminal: bool,
    no_color: Option<&std::ffi::OsStr>,
    term: Option<&std::ffi::OsStr>,
) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty()) && term.is_none_or(|t| t != "dumb")
}

fn line(level: Level, msg: &str) {
    let mut err = std::io::stderr().lock();
    let _ = if color() {
        writeln!(err, "\x1b[{}m{}:\x1b[0m {msg}", level.sgr(), level.word())
    } else {
        writeln!(err, "{}: {msg}", level.word())
    };
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
    line(Level::Error, msg);
}

pub fn hint(msg: &str) {
    line(Level::Hint, msg);
}

/// One line of data on stdout. A closed stdout is not an error worth a
/// message (`ig image list | head -1`).
pub fn stdout_line(s: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{s}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn no_color_and_dumb_terminals_win() {
        assert!(wants_color(true, None, Some(OsStr::new("xterm"))));
        assert!(wants_color(true, Some(OsStr::new("")), None));
        assert!(!wants_color(true, Some(OsStr::new("1")), None));
        assert!(!wants_color(true, None, Some(OsStr::new("dumb"))));
        assert!(!wants_color(false, None, None));
    }
}
