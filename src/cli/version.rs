//! `ig version`: what a bug report needs to name this binary.

/// The lines of `ig version`: the crate version, the git commit it was
/// built from (`unknown` outside a git checkout, see `crates/ig/build.rs`), the
/// author-API version gadgets are built against, and the target.
pub fn text() -> String {
    format!(
        "ig version v{}\ngit commit: {}\ngadget author API: {}\ntarget: {}",
        env!("CARGO_PKG_VERSION"),
        ig::version::GIT_COMMIT,
        ig::build::headers::AUTHOR_API_VERSION,
        ig::version::BUILD_TARGET,
    )
}
