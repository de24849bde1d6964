//! `ig image build` on a host that has the build tools (clang, llvm-strip,
//! the libbpf headers) but neither this repository nor bpftool: the author
//! headers are in the binary and `vmlinux.h` is generated from the running
//! kernel's BTF by the binary itself. Shared with `tests/dist`, which runs
//! the same check on the static binary.

use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Copies `ig` and `gadgets/trace_exec` to a temporary directory outside
/// the repository, then, in a mount namespace of its own where the
/// repository is hidden under an empty tmpfs and every bpftool of the usual
/// paths is replaced by a script that fails, builds the gadget into a store
/// there and inspects it: the data source and its fields come out of the
/// object. Needs root.
pub fn build_with_the_repository_hidden(ig: &Path) {
    let work = tempfile::Builder::new()
        .prefix("ig-outside-")
        .tempdir_in("/tmp")
        .unwrap();
    assert!(!work.path().starts_with(repo()));
    let bin = work.path().join("ig");
    std::fs::copy(ig, &bin).unwrap();
    let gadget = work.path().join("mygadget");
    std::fs::create_dir(&gadget).unwrap();
    for f in ["program.bpf.c", "gadget.yaml"] {
        std::fs::copy(repo().join("gadgets/trace_exec").join(f), gadget.join(f)).unwrap();
    }
    // Run in place of bpftool, it says so and fails the build.
    let fake = work.path().join("no-bpftool");
    std::fs::write(&fake, "#!/bin/sh\necho 'bpftool was run' >&2\nexit 97\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let script = format!(
        "set -e; mount -t tmpfs none '{repo}'; test ! -e '{repo}/gadget-ebpf'; \
         for b in /usr/sbin/bpftool /sbin/bpftool /usr/bin/bpftool /bin/bpftool \
                  /usr/local/sbin/bpftool /usr/local/bin/bpftool; do \
           if [ -e \"$b\" ]; then mount --bind '{fake}' \"$b\"; fi; \
         done; \
         if bpftool version >/dev/null 2>&1; then echo 'bpftool still runs' >&2; exit 1; fi; \
         cd '{work}'; \
         ./ig --store ./store image build mygadget -t mygadget; \
         ./ig --store ./store image inspect mygadget --show-datasources -o json",
        repo = repo().display(),
        work = work.path().display(),
        fake = fake.display(),
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .env_remove("IG_STORE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    let shown = text(&out.stdout);
    assert!(
        shown.starts_with("Successfully built ghcr.io/inspektor-gadget/gadget/mygadget:latest@"),
        "{shown}"
    );
    let json = &shown[shown.find('{').unwrap()..];
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let fields = v.to_string();
    assert!(
        fields.contains("\"exec\"") && fields.contains("\"args\""),
        "{v:#}"
    );
}
