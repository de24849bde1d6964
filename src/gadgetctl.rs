//! The `gadgetctl` binary: the client of `ig daemon`
//! (`ig_cli::cli::gadgetctl`).

/// The shipped static binaries: musl's allocator unmaps freed large
/// blocks at once (see `ig_cli::block_cache`).
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOC: ig_cli::block_cache::BlockCache = ig_cli::block_cache::BlockCache::new();

fn main() -> std::process::ExitCode {
    ig_cli::cli::gadgetctl::main()
}
