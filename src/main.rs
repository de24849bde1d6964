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
    ig_cli::cli::main()
}
