//! `vmlinux.h` from this machine's kernel BTF, as `ig image build` writes
//! it (`build::make_vmlinux_h`, no bpftool): clang compiles it for BPF
//! with the libbpf headers, without a warning, and every struct and union
//! has the kernel's layout: a `_Static_assert` on the size of each one
//! whose name is unique, and on the offset of each of its members that is
//! not a bitfield (members of anonymous members included, as C reaches
//! them). Bitfields are checked by the unit tests of `btf::c_header`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::process::Command;

use ig::btf::{Btf, Kind, TypeId};

/// Appends an offset check for every named non-bitfield member of `id`,
/// descending into anonymous members; `base` is the bit offset of `id` in
/// the struct `ty` being checked.
fn member_checks(btf: &Btf, ty: &str, id: TypeId, base: u32, out: &mut String, n: &mut usize) {
    for m in btf.members(id).unwrap() {
        let off = base + m.bit_offset;
        let name = btf.str(m.name);
        if name.is_empty() {
            let inner = btf.skip_modifiers(m.ty).unwrap();
            if matches!(btf.kind(inner).unwrap(), Kind::Struct(_) | Kind::Union(_)) {
                member_checks(btf, ty, inner, off, out, n);
            }
            continue;
        }
        let legacy_bitfield = matches!(
            btf.kind(btf.skip_modifiers(m.ty).unwrap()).unwrap(),
            Kind::Int(i) if u32::from(i.bits) < i.size * 8
        );
        if m.bitfield_size > 0 || legacy_bitfield || !off.is_multiple_of(8) {
            continue;
        }
        writeln!(
            out,
            "_Static_assert(__builtin_offsetof({ty}, {name}) == {}, \"{ty}.{name}\");",
            off / 8
        )
        .unwrap();
        *n += 1;
    }
}

#[test]
fn vmlinux_h_from_this_kernel_compiles_with_the_kernels_layout() {
    let btf_path = std::path::Path::new(ig::build::KERNEL_BTF);
    let dir = tempfile::tempdir().unwrap();
    let header = dir.path().join("vmlinux.h");
    ig::build::make_vmlinux_h(btf_path, &header).unwrap();
    let btf = Btf::parse(&std::fs::read(btf_path).unwrap()).unwrap();

    // Tags that more than one type has are renamed (`name___2`): left out.
    let mut holders: HashMap<&str, usize> = HashMap::new();
    for (_, t) in btf.types() {
        if matches!(
            t.kind,
            Kind::Struct(_) | Kind::Union(_) | Kind::Enum(_) | Kind::Enum64(_)
        ) && !t.name.is_empty()
        {
            *holders.entry(btf.str(t.name)).or_default() += 1;
        }
    }
    let mut checks = String::new();
    let (mut sizes, mut offsets) = (0, 0);
    let mut seen = Vec::new();
    for (id, t) in btf.types() {
        let kw = match t.kind {
            Kind::Struct(_) => "struct",
            Kind::Union(_) => "union",
            _ => continue,
        };
        let name = btf.str(t.name);
        if name.is_empty() || holders[name] != 1 {
            continue;
        }
        let ty = format!("{kw} {name}");
        let size = btf.size_of(id).unwrap();
        writeln!(
            checks,
            "_Static_assert(sizeof({ty}) == {size}, \"sizeof {ty}\");"
        )
        .unwrap();
        sizes += 1;
        member_checks(&btf, &ty, id, 0, &mut checks, &mut offsets);
        seen.push(name);
    }
    for name in [
        "task_struct",
        "mm_struct",
        "sk_buff",
        "linux_binprm",
        "file",
    ] {
        assert!(seen.contains(&name), "struct {name} not checked");
    }
    assert!(
        sizes > 5000 && offsets > 50_000,
        "{sizes} sizes, {offsets} offsets"
    );

    let src = dir.path().join("check.c");
    std::fs::write(
        &src,
        format!(
            "#include \"vmlinux.h\"\n\
             #include <bpf/bpf_helpers.h>\n\
             #include <bpf/bpf_core_read.h>\n\
             #include <bpf/bpf_tracing.h>\n\
             #ifndef __VMLINUX_H__\n#error the guard gadget/types.h tests is missing\n#endif\n\
             char comm[TASK_COMM_LEN];\n\
             SEC(\"tp/sched/sched_process_exec\")\n\
             int on_exec(void *ctx) {{\n\
             \tstruct task_struct *t = (void *)bpf_get_current_task();\n\
             \treturn BPF_CORE_READ(t, mm, exe_file, f_inode, i_ino) == 0;\n\
             }}\n\
             {checks}"
        ),
    )
    .unwrap();
    let clang = std::env::var("IG_CLANG").unwrap_or_else(|_| "clang".into());
    let out = Command::new(&clang)
        .args(["-target", "bpf", "-g", "-O2"])
        .arg(format!(
            "-D__TARGET_ARCH_{}",
            ig::build::headers::TARGET_ARCH
        ))
        .args(["-Wall", "-Werror", "-c"])
        .arg(format!(
            "-I/usr/include/{}-linux-gnu",
            std::env::consts::ARCH
        ))
        .arg(&src)
        .arg("-o")
        .arg(dir.path().join("check.o"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "clang failed ({sizes} sizes, {offsets} offsets checked):\n{}",
        err.lines().take(40).collect::<Vec<_>>().join("\n")
    );
}
