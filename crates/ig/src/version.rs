//! What the library was built from, for `ig version` (set by `build.rs`).

/// The git commit (`unknown` outside a checkout; `IG_GIT_COMMIT` at build
/// time wins).
pub const GIT_COMMIT: &str = env!("IG_GIT_COMMIT");

/// The target triple (a static musl build tells itself apart).
pub const BUILD_TARGET: &str = env!("IG_BUILD_TARGET");
