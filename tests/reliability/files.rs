//! Files ig writes outside its store: where `ig image export` puts its tar
//! (devices, FIFOs, stdout, sockets, directories, terminals, other users'
//! files), and temp files that another user could try to pre-empt. As
//! root, like ig usually runs.

use std::io::Read as _;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::{TestStore, fixture_copy, text};

/// A store with one small image, `rela`, and the bytes of its export to a
/// regular file (exports are reproducible).
fn store_and_tar() -> (TestStore, Vec<u8>) {
    let s = TestStore::new();
    s.build(fixture_copy("minimal_tracer").path(), "rela");
    let tar = s.dir.path().join("reference.tar");
    let out = s.run(&["image", "export", "rela", tar.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bytes = std::fs::read(&tar).unwrap();
    assert!(bytes.len() > 4096, "{} bytes", bytes.len());
    (s, bytes)
}

fn export(s: &TestStore, dest: &Path) -> Output {
    s.run(&["image", "export", "rela", dest.to_str().unwrap()])
}

fn kind(p: &Path) -> String {
    let t = std::fs::symlink_metadata(p).unwrap().file_type();
    let k = if t.is_char_device() {
        "char device"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_socket() {
        "socket"
    } else if t.is_symlink() {
        "symlink"
    } else if t.is_dir() {
        "dir"
    } else {
        "file"
    };
    k.to_owned()
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", text(&out.stderr));
}

/// One line on stderr, naming the destination, and a failure.
fn assert_refused(out: &Output, needle: &str) {
    let err = text(&out.stderr);
    assert!(!out.status.success(), "accepted: {err}");
    assert!(err.contains(needle), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(text(&out.stdout).is_empty(), "{}", text(&out.stdout));
}

/// `ig image export rela /tmp/d` replaced the device node `/tmp/d` with a
/// regular file, and turned `/dev/full` into one; FIFOs and stdout were
/// renamed over too. A device, a FIFO or stdout now gets the tar as a
/// stream and stays what it was.
#[test]
fn export_streams_to_devices_fifos_and_stdout_and_never_replaces_them() {
    let (s, reference) = store_and_tar();
    let dir = tempfile::tempdir().unwrap();

    // A null device: written, still a device.
    let null = dir.path().join("null");
    run_ok(Command::new("mknod").arg(&null).args(["c", "1", "3"]));
    let out = export(&s, &null);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("Exported"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(kind(&null), "char device");

    // A full device: the write fails, ig says so and exits 1, the node
    // stays.
    let full = dir.path().join("full");
    run_ok(Command::new("mknod").arg(&full).args(["c", "1", "7"]));
    for dest in [full.as_path(), Path::new("/dev/full")] {
        let out = export(&s, dest);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("No space left on device"), "{err}");
        // Said once (the chain printed the io error's text twice).
        assert_eq!(err.matches("os error 28").count(), 1, "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!text(&out.stdout).contains("Exported"));
        assert_eq!(kind(dest), "char device", "{}", dest.display());
    }

    // A FIFO: its reader gets exactly the tar, and it stays a FIFO.
    let fifo = dir.path().join("fifo");
    run_ok(Command::new("mkfifo").arg(&fifo));
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut got = Vec::new();
            std::fs::File::open(&fifo)
                .unwrap()
                .read_to_end(&mut got)
                .unwrap();
            got
        })
    };
    let out = export(&s, &fifo);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        reader.join().unwrap() == reference,
        "the FIFO got other bytes"
    );
    assert_eq!(kind(&fifo), "fifo");

    // `-` and `/dev/stdout` into a pipe: the tar, and nothing else, on
    // stdout; the confirmation goes to stderr.
    for dest in ["-", "/dev/stdout"] {
        let out = s.run(&["image", "export", "rela", dest]);
        assert!(out.status.success(), "{dest}: {}", text(&out.stderr));
        assert!(out.stdout == reference, "{dest}: other bytes on stdout");
        assert!(
            text(&out.stderr).contains("Exported ghcr.io/inspektor-gadget/gadget/rela:latest"),
            "{}",
            text(&out.stderr)
        );
    }
    // `/dev/stdout` when stdout is a socket (which cannot be opened by
    // path): still our stdout.
    let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let child = s
        .ig()
        .args(["image", "export", "rela", "/dev/stdout"])
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut got = Vec::new();
    ours.read_to_end(&mut got).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(got == reference, "the socket got other bytes");
    // `/dev/stdout` when stdout is a regular file: written at its offset.
    let file = dir.path().join("stdout-file");
    let script = format!(
        "{{ printf head; '{ig}' image export rela /dev/stdout; }} > '{f}'",
        ig = crate::common::ig_bin(),
        f = file.display()
    );
    run_ok(
        Command::new("sh")
            .args(["-c", &script])
            .env("IG_STORE", s.path()),
    );
    let got = std::fs::read(&file).unwrap();
    assert!(got.starts_with(b"head") && got[4..] == reference[..]);

    // A link of ours to a regular file: the target is rewritten, the link
    // stays.
    let target = dir.path().join("target.tar");
    std::fs::write(&target, vec![b'x'; reference.len() * 2]).unwrap();
    let link = dir.path().join("link.tar");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let out = export(&s, &link);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(kind(&link), "symlink");
    assert!(std::fs::read(&target).unwrap() == reference);

    // A regular file is replaced whole, its mode kept.
    let regular = dir.path().join("regular.tar");
    std::fs::write(&regular, b"old").unwrap();
    std::fs::set_permissions(&regular, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = export(&s, &regular);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(std::fs::read(&regular).unwrap() == reference);
    let mode = std::fs::metadata(&regular).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o640);

    // Nothing of ours is left next to them.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("ig-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A pseudo-terminal's secondary side, for ig's stdout or as a path.
fn pty() -> (std::fs::File, PathBuf) {
    // SAFETY: plain calls on a descriptor we own; ptsname_r writes at
    // most `buf.len()` bytes.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(master >= 0, "posix_openpt");
        assert_eq!(libc::grantpt(master), 0);
        assert_eq!(libc::unlockpt(master), 0);
        let mut buf = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(master, buf.as_mut_ptr(), buf.len()), 0);
        let name = std::ffi::CStr::from_ptr(buf.as_ptr())
            .to_string_lossy()
            .into_owned();
        use std::os::fd::FromRawFd as _;
        (std::fs::File::from_raw_fd(master), PathBuf::from(name))
    }
}

/// What cannot take a tar is refused in one line, and left as it was.
#[test]
fn export_refuses_directories_sockets_and_terminals() {
    let (s, _) = store_and_tar();
    let dir = tempfile::tempdir().unwrap();

    let out = export(&s, dir.path());
    assert_refused(&out, "is a directory: name a file in it");
    assert_eq!(kind(dir.path()), "dir");

    let sock = dir.path().join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let out = export(&s, &sock);
    assert_refused(
        &out,
        "is a socket: write to a file, a FIFO, a device or - (stdout)",
    );
    assert_eq!(kind(&sock), "socket");

    let (_master, secondary) = pty();
    let out = export(&s, &secondary);
    assert_refused(&out, "refusing to write binary data to a terminal");
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&secondary)
        .unwrap();
    let out = s
        .ig()
        .args(["image", "export", "rela", "-"])
        .stdout(Stdio::from(tty))
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("refusing to write binary data to a terminal (stdout)"),
        "{err}"
    );
}

/// `setpriv` to nobody.
fn as_nobody(program: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", program]);
    c
}

/// In a directory another user can write, that user planted links at the
/// temp names ig would use (`.NAME.ig-tmp-PID` with `O_CREAT|O_TRUNC`),
/// and root's export overwrote the links' target. Now the temp name is
/// unpredictable and created exclusively: the planted link is not
/// followed, and the export succeeds. Another user's link or FIFO at the
/// destination itself is refused, not written through.
#[test]
fn links_another_user_plants_do_not_redirect_roots_export() {
    let (s, reference) = store_and_tar();
    let base = tempfile::tempdir().unwrap();
    // nobody must reach `shared` below.
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let victim = base.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    // World-writable, not sticky: the kernel's protected_symlinks would
    // not stop root from following a link here.
    let shared = base.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let dest = shared.join("out.tar");

    // ig is started stopped, so nobody learns its pid too late to plant.
    let child = Command::new("sh")
        .args(["-c", "kill -STOP $$; exec \"$0\" \"$@\""])
        .arg(crate::common::ig_bin())
        .args(["image", "export", "rela", dest.to_str().unwrap()])
        .env("IG_STORE", s.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let state = stat.rsplit(')').next().unwrap().split_whitespace().next();
        if state == Some("T") {
            break;
        }
        assert!(std::time::Instant::now() < end, "sh did not stop");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let planted = shared.join(format!(".out.tar.ig-tmp-{pid}"));
    run_ok(as_nobody("ln").arg("-s").arg(&victim).arg(&planted));
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::symlink_metadata(&planted).unwrap()),
        65534
    );
    // SAFETY: a signal to our own child.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGCONT) }, 0);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let now = std::fs::read(&victim).unwrap();
    assert!(
        now == b"precious",
        "the planted link was followed: the victim now holds {} bytes",
        now.len()
    );
    assert_eq!(kind(&planted), "symlink");
    assert!(std::fs::read(&dest).unwrap() == reference);
    let names: Vec<String> = std::fs::read_dir(&shared)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "a temp file was left: {names:?}");

    // Another user's link, or FIFO, at the destination itself.
    let theirs = shared.join("theirs.tar");
    run_ok(as_nobody("ln").arg("-s").arg(&victim).arg(&theirs));
    let out = export(&s, &theirs);
    assert_refused(
        &out,
        "is a symbolic link owned by uid 65534: ig does not write through another user's symbolic link",
    );
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert_eq!(kind(&theirs), "symlink");
    let fifo = shared.join("fifo.tar");
    run_ok(as_nobody("mkfifo").arg(&fifo));
    let out = export(&s, &fifo);
    assert_refused(&out, "is a FIFO owned by uid 65534");
    assert_eq!(kind(&fifo), "fifo");
}
