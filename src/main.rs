//! The `ig` binary: the command line is `ig_cli::cli`, over the `ig` library.

/// The shipped static binaries: musl's allocator unmaps freed large
/// blocks at once (see `ig_cli::block_cache`).
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOC: ig_cli::block_cache::BlockCache = ig_cli::block_cache::BlockCache::new();

fn main() -> std::process::ExitCode {
    // SIGINT and SIGTERM always stop `ig`. A parent may hand them down
    // ignored (a non-interactive shell does so for `cmd &`); once `ig run`
    // blocks them and reads them from a signalfd it sees them anyway, so an
    // inherited SIG_IGN would only make a signal in the first milliseconds
    // vanish and leave `ig` running. Back to the default, the behaviour is
    // the same from the first instruction to the last.
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: setting a default disposition, before any thread exists.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    // `ig daemon`: SIGHUP reopens its log files once its I/O runtime runs
    // (`daemon::reopen_on_hangup`, whose handler replaces this). Until then
    // (the config read, the store opened, headless instances made again:
    // seconds with many) it is ignored instead of ending the daemon:
    // logrotate sends it when it pleases. Decided here, before the
    // arguments are parsed, to leave the smallest window; other commands
    // keep the default (a closed terminal ends them).
    if std::env::args_os().nth(1).is_some_and(|a| a == "daemon") {
        // SAFETY: as above.
        unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
    }
    ig_cli::cli::main()
}
