//! Packet filters chosen when a gadget runs (`--pf EXPR`, `--pf-NAME
//! EXPR`: upstream's `pf` parameters), for the hook `gadget/packetfilter.h`
//! puts in networking gadgets (`gadget_pf_matches`).
//!
//! The expression is tcpdump's language; `tcpdump -ddd -y EN10MB` compiles
//! it to classic BPF with libpcap ([`compile`]: an external program, found
//! on `PATH`, so that `ig` links no libpcap; `docs/design/008`). The
//! classic program is translated to eBPF ([`to_ebpf`]) for the calling
//! convention of `GADGET_PF`: registers R1-R3 hold the skb, R4 and R5 the
//! packet's start and end. The code ends by setting R1-R3 and R5 to 0 and
//! R4 to the filter's result, then runs into the placeholder's own body
//! (`data != data_end && skb1 == skb2 && skb2 == skb3`), which therefore
//! returns whether the filter matched (upstream's scheme).
//! `compat::inject_filter` puts the code at the start of the function.
//!
//! Classic BPF semantics kept: `A` and `X` are 32 bits, loads are
//! big-endian, a load past the end of the packet or a division by zero
//! ends the filter with 0 (no match), the scratch memory starts at 0.
//! Linux's ancillary loads (negative offsets from `SKF_AD_OFF`) have no
//! equivalent and are refused.
//!
//! Pure but [`compile`], which runs tcpdump.

use std::process::{Command, Stdio};

/// The name prefix of the hook functions (`GADGET_PF(name)`).
pub const FUNC_PREFIX: &str = "gadget_pf_";
/// Upstream's name of the expression that matches nothing.
pub const REJECT_ALL: &str = "__reject_all__";

/// Why a `--pf` expression cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PfError {
    /// --pf needs tcpdump to compile the filter expression, and it is not on
    /// PATH (Debian: apt-get install tcpdump).
    #[error(
        "--pf needs tcpdump to compile the filter expression, and it is not on PATH (Debian: apt-get install tcpdump)"
    )]
    NoTcpdump(#[source] std::io::Error),
    /// tcpdump refused the expression.
    #[error("packet filter {expr:?}: {message}")]
    Expression {
        /// The expression.
        expr: String,
        /// What tcpdump said.
        message: String,
    },
    /// tcpdump -ddd printed something that is not a classic BPF program.
    #[error("tcpdump -ddd printed something that is not a classic BPF program: {0}")]
    Output(String),
    /// The packet filter cannot be translated to eBPF.
    #[error("the packet filter cannot be translated to eBPF: {0}")]
    Translate(String),
}

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cbpf {
    /// The opcode.
    pub code: u16,
    /// Jump offset if true.
    pub jt: u8,
    /// Jump offset if false.
    pub jf: u8,
    /// The operand.
    pub k: u32,
}

/// The parameter a hook function takes its expression from: `pf` for
/// `gadget_pf_` (`GADGET_PF()`), `pf-NAME` for `gadget_pf_NAME`.
pub fn param_key(function: &str) -> Option<String> {
    let name = function.strip_prefix(FUNC_PREFIX)?;
    Some(if name.is_empty() {
        "pf".to_owned()
    } else {
        format!("pf-{name}")
    })
}

/// The hook functions of an object (functions named `gadget_pf_*` in its
/// BTF).
pub fn functions(btf: &crate::btf::Btf) -> Vec<String> {
    let mut out: Vec<String> = btf
        .types()
        .filter(|(_, t)| matches!(t.kind, crate::btf::Kind::Func { .. }))
        .map(|(_, t)| btf.str(t.name))
        .filter(|n| n.starts_with(FUNC_PREFIX))
        .map(str::to_owned)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// `tcpdump -ddd`'s output: the count, then `code jt jf k` per line.
pub fn parse_ddd(text: &str) -> Result<Vec<Cbpf>, PfError> {
    let bad = |why: &str| PfError::Output(why.to_owned());
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let n: usize = lines
        .next()
        .and_then(|l| l.parse().ok())
        .ok_or_else(|| bad("no instruction count"))?;
    if n == 0 || n > 4096 {
        return Err(bad("an instruction count out of range"));
    }
    let mut out = Vec::with_capacity(n);
    for l in lines {
        let f: Vec<u64> = l
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| bad(l))?;
        let [code, jt, jf, k] = f[..] else {
            return Err(bad(l));
        };
        out.push(Cbpf {
            code: u16::try_from(code).map_err(|_| bad(l))?,
            jt: u8::try_from(jt).map_err(|_| bad(l))?,
            jf: u8::try_from(jf).map_err(|_| bad(l))?,
            k: u32::try_from(k).map_err(|_| bad(l))?,
        });
    }
    if out.len() != n {
        return Err(bad("fewer instructions than announced"));
    }
    Ok(out)
}

/// Compile `expr` for Ethernet frames with `tcpdump -ddd -y EN10MB`.
pub fn compile(expr: &str) -> Result<Vec<Cbpf>, PfError> {
    let out = Command::new("tcpdump")
        .args(["-ddd", "-y", "EN10MB", "--"])
        .arg(expr)
        .stdin(Stdio::null())
        .output()
        .map_err(PfError::NoTcpdump)?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let message = err
            .lines()
            .map(|l| l.trim_start_matches("tcpdump: "))
            .find(|l| !l.trim().is_empty())
            .unwrap_or("tcpdump refused it")
            .to_owned();
        return Err(PfError::Expression {
            expr: expr.to_owned(),
            message,
        });
    }
    parse_ddd(&String::from_utf8_lossy(&out.stdout))
}

// --- eBPF ------------------------------------------------------------------

// Registers: R4/R5 packet start/end (kept), R1 the skb; A, X, two
// temporaries; R0 the result.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;
const A: u8 = 6;
const X: u8 = 7;
const P: u8 = 8;
const T: u8 = 9;
const FP: u8 = 10;

// Opcode parts (include/uapi/linux/bpf_common.h, bpf.h).
const LDX: u8 = 0x01;
const STX: u8 = 0x03;
const ALU: u8 = 0x04;
const JMP: u8 = 0x05;
const JMP32: u8 = 0x06;
const ALU64: u8 = 0x07;
const SZ_W: u8 = 0x00;
const SZ_H: u8 = 0x08;
const SZ_B: u8 = 0x10;
const MEM: u8 = 0x60;
const SRC_K: u8 = 0x00;
const SRC_X: u8 = 0x08;
const OP_ADD: u8 = 0x00;
const OP_AND: u8 = 0x50;
const OP_LSH: u8 = 0x60;
const OP_MOV: u8 = 0xb0;
const OP_END: u8 = 0xd0;
const OP_JA: u8 = 0x00;
const OP_JEQ: u8 = 0x10;
const OP_JGT: u8 = 0x20;

/// Where a jump goes, before offsets are known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Cbpf(usize),
    Fail,
    Done,
}

#[derive(Default)]
struct Emitter {
    code: Vec<[u8; 8]>,
    jumps: Vec<(usize, Target)>,
}

impl Emitter {
    fn insn(&mut self, op: u8, dst: u8, src: u8, off: i16, imm: i32) {
        let mut i = [0u8; 8];
        i[0] = op;
        i[1] = (src << 4) | dst;
        i[2..4].copy_from_slice(&off.to_le_bytes());
        i[4..8].copy_from_slice(&imm.to_le_bytes());
        self.code.push(i);
    }
    fn jump(&mut self, op: u8, dst: u8, src: u8, imm: i32, to: Target) {
        self.jumps.push((self.code.len(), to));
        self.insn(op, dst, src, 0, imm);
    }
    fn ja(&mut self, to: Target) {
        self.jump(JMP | OP_JA, 0, 0, 0, to);
    }
    fn mov32_k(&mut self, dst: u8, k: u32) {
        self.insn(ALU | OP_MOV | SRC_K, dst, 0, 0, k as i32);
    }
    fn mov64_x(&mut self, dst: u8, src: u8) {
        self.insn(ALU64 | OP_MOV | SRC_X, dst, src, 0, 0);
    }

    /// `dst = packet[base + k]` of `size` bytes (1, 2, 4), big-endian;
    /// past the end: fail. `base`: add X first (indirect loads).
    fn load(&mut self, dst: u8, size: u32, k: u32, indirect: bool) {
        // The verifier accepts packet offsets below 64 KiB; beyond, no
        // packet is that long anyway.
        if k > 0xffff {
            self.ja(Target::Fail);
            return;
        }
        self.mov64_x(P, R4);
        if indirect {
            self.jump(JMP | OP_JGT | SRC_K, X, 0, 0xffff, Target::Fail);
            self.insn(ALU64 | OP_ADD | SRC_X, P, X, 0, 0);
        }
        self.insn(ALU64 | OP_ADD | SRC_K, P, 0, 0, k as i32);
        self.mov64_x(T, P);
        self.insn(ALU64 | OP_ADD | SRC_K, T, 0, 0, size as i32);
        self.jump(JMP | OP_JGT | SRC_X, T, R5, 0, Target::Fail);
        let sz = match size {
            4 => SZ_W,
            2 => SZ_H,
            _ => SZ_B,
        };
        self.insn(LDX | MEM | sz, dst, P, 0, 0);
        if size > 1 {
            // To big endian: network order to the host's.
            self.insn(ALU | OP_END | 0x08, dst, 0, 0, (size * 8) as i32);
        }
    }
}

/// Stack offset of scratch memory slot `k` (each in its own 8 bytes).
fn slot(k: u32) -> i16 {
    -8 * (k as i16 + 1)
}

/// Translate `prog` (checked: known opcodes, jumps inside, scratch slots
/// 0-15) into eBPF instructions, to be run at the start of a `GADGET_PF`
/// function.
pub fn to_ebpf(prog: &[Cbpf]) -> Result<Vec<[u8; 8]>, PfError> {
    let bad = |i: usize, why: &str| PfError::Translate(format!("instruction {i}: {why}"));
    let n = prog.len();
    // Reachable instructions only: the verifier refuses unreachable code.
    let mut reach = vec![false; n];
    if n > 0 {
        reach[0] = true;
    }
    for (i, c) in prog.iter().enumerate() {
        if !reach[i] {
            continue;
        }
        let class = c.code & 7;
        let mut next = |t: usize| -> Result<(), PfError> {
            *reach
                .get_mut(t)
                .ok_or_else(|| bad(i, "a jump past the end"))? = true;
            Ok(())
        };
        match class {
            0x05 => {
                if c.code & 0xf0 == 0 {
                    next(i + 1 + c.k as usize)?;
                } else {
                    next(i + 1 + usize::from(c.jt))?;
                    next(i + 1 + usize::from(c.jf))?;
                }
            }
            0x06 => {}
            _ => next(i + 1)?,
        }
    }
    let mut e = Emitter::default();
    e.mov32_k(A, 0);
    e.mov32_k(X, 0);
    // Scratch memory starts at 0 (classic BPF's), and the verifier refuses
    // reads of stack it did not see written.
    let mut slots: Vec<u32> = prog
        .iter()
        .filter(|c| matches!(c.code & 7, 0x02 | 0x03) || matches!(c.code, 0x60 | 0x61))
        .map(|c| c.k)
        .collect();
    slots.sort_unstable();
    slots.dedup();
    for &k in &slots {
        if k > 15 {
            return Err(PfError::Translate(format!("scratch slot {k}")));
        }
        e.insn(0x7a /* ST DW */, FP, 0, slot(k), 0);
    }
    let mut starts = vec![usize::MAX; n];
    for (i, c) in prog.iter().enumerate() {
        if !reach[i] {
            continue;
        }
        starts[i] = e.code.len();
        let class = c.code & 7;
        let size = match c.code & 0x18 {
            0x00 => 4,
            0x08 => 2,
            _ => 1,
        };
        match (class, c.code) {
            // LD
            (0x00, _) => match c.code & 0xe0 {
                0x00 => e.mov32_k(A, c.k),
                0x20 | 0x40 => {
                    if c.k >= 0xffff_f000 {
                        return Err(bad(i, "a Linux ancillary load (SKF_AD_OFF)"));
                    }
                    e.load(A, size, c.k, c.code & 0xe0 == 0x40);
                }
                0x60 => e.insn(LDX | MEM | SZ_W, A, FP, slot(c.k), 0),
                // The packet's length: skb->len (the first member).
                0x80 => e.insn(LDX | MEM | SZ_W, A, R1, 0, 0),
                _ => return Err(bad(i, "an unknown load mode")),
            },
            // LDX
            (0x01, _) => match c.code & 0xe0 {
                0x00 => e.mov32_k(X, c.k),
                0x60 => e.insn(LDX | MEM | SZ_W, X, FP, slot(c.k), 0),
                0x80 => e.insn(LDX | MEM | SZ_W, X, R1, 0, 0),
                // X = 4 * (packet[k] & 0xf): an IPv4 header's length.
                0xa0 => {
                    e.load(X, 1, c.k, false);
                    e.insn(ALU | OP_AND | SRC_K, X, 0, 0, 0xf);
                    e.insn(ALU | OP_LSH | SRC_K, X, 0, 0, 2);
                }
                _ => return Err(bad(i, "an unknown load mode")),
            },
            (0x02, _) => e.insn(STX | MEM | SZ_W, FP, A, slot(c.k), 0),
            (0x03, _) => e.insn(STX | MEM | SZ_W, FP, X, slot(c.k), 0),
            // ALU on A, 32 bits.
            (0x04, _) => {
                let op = (c.code & 0xf0) as u8;
                let from_x = c.code & 0x08 != 0;
                if op == 0x80 {
                    e.insn(ALU | 0x80, A, 0, 0, 0); // neg
                } else if op > 0xa0 || op == 0xb0 {
                    return Err(bad(i, "an unknown ALU operation"));
                } else if from_x {
                    if op == 0x30 || op == 0x90 {
                        // Division by X == 0 ends the filter with 0.
                        e.jump(JMP | OP_JEQ | SRC_K, X, 0, 0, Target::Fail);
                    }
                    e.insn(ALU | op | SRC_X, A, X, 0, 0);
                } else if (op == 0x30 || op == 0x90) && c.k == 0 {
                    e.ja(Target::Fail);
                } else {
                    e.insn(ALU | op | SRC_K, A, 0, 0, c.k as i32);
                }
            }
            // Jumps, forward only.
            (0x05, _) => {
                let op = (c.code & 0xf0) as u8;
                if op == 0 {
                    e.ja(Target::Cbpf(i + 1 + c.k as usize));
                } else {
                    if !matches!(op, 0x10 | 0x20 | 0x30 | 0x40) {
                        return Err(bad(i, "an unknown jump"));
                    }
                    let (src, imm) = if c.code & 0x08 != 0 {
                        (X, 0)
                    } else {
                        (0, c.k as i32)
                    };
                    let t = i + 1 + usize::from(c.jt);
                    let f = i + 1 + usize::from(c.jf);
                    e.jump(
                        JMP32 | op | (c.code & 0x08) as u8,
                        A,
                        src,
                        imm,
                        Target::Cbpf(t),
                    );
                    if f != i + 1 {
                        e.ja(Target::Cbpf(f));
                    }
                }
            }
            // RET k, RET A.
            (0x06, _) => {
                match c.code & 0x18 {
                    0x00 => e.mov32_k(R0, c.k),
                    _ => e.insn(ALU | OP_MOV | SRC_X, R0, A, 0, 0),
                }
                e.ja(Target::Done);
            }
            (0x07, 0x07) => e.insn(ALU | OP_MOV | SRC_X, X, A, 0, 0), // tax
            (0x07, 0x87) => e.insn(ALU | OP_MOV | SRC_X, A, X, 0, 0), // txa
            _ => return Err(bad(i, "an unknown instruction")),
        }
    }
    finish(e, &starts)
}

/// The code that matches nothing (upstream's `__reject_all__`).
pub fn reject_all() -> Vec<[u8; 8]> {
    let mut e = Emitter::default();
    e.mov32_k(R0, 0);
    finish(e, &[]).unwrap_or_default()
}

/// Append the failure path (if used) and the epilogue, resolve jumps.
fn finish(mut e: Emitter, starts: &[usize]) -> Result<Vec<[u8; 8]>, PfError> {
    let mut fail = None;
    if e.jumps.iter().any(|(_, t)| *t == Target::Fail) {
        fail = Some(e.code.len());
        e.mov32_k(R0, 0);
    }
    let done = e.code.len();
    // The placeholder's body computes `data != data_end && skb1 == skb2
    // && skb2 == skb3`: with these, its answer is `result != 0`.
    e.mov64_x(R4, R0);
    for r in [R1, R2, R3, R5] {
        e.insn(ALU64 | OP_MOV | SRC_K, r, 0, 0, 0);
    }
    for (at, t) in std::mem::take(&mut e.jumps) {
        let to = match t {
            Target::Cbpf(i) => *starts
                .get(i)
                .filter(|s| **s != usize::MAX)
                .ok_or_else(|| PfError::Translate(format!("a jump to instruction {i}")))?,
            Target::Fail => fail.unwrap_or(done),
            Target::Done => done,
        };
        let off = i16::try_from(to as i64 - at as i64 - 1)
            .map_err(|_| PfError::Translate("the filter is too long".into()))?;
        e.code[at][2..4].copy_from_slice(&off.to_le_bytes());
    }
    Ok(e.code)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `tcpdump -ddd -y EN10MB 'ether proto 0x88b5 and ether[14:2] = 0x1234'`
    /// (tcpdump 4.99, libpcap 1.10).
    const PROG: &str =
        "6\n40 0 0 12\n21 0 3 34997\n40 0 0 14\n21 0 1 4660\n6 0 0 262144\n6 0 0 0\n";

    /// A tiny interpreter of the eBPF we emit (and of the placeholder's
    /// answer), over `packet`.
    fn run(code: &[[u8; 8]], packet: &[u8]) -> u64 {
        let mut r = [0u64; 11];
        let mut stack = [0u8; 512];
        r[4] = 0x1000; // data: a fake address
        r[5] = 0x1000 + packet.len() as u64;
        r[1] = 0x9000; // skb, whose len is at offset 0
        let mut pc = 0usize;
        loop {
            let Some(i) = code.get(pc) else {
                // Fell through into the placeholder's body.
                return u64::from(r[4] != r[5] && r[1] == r[2] && r[2] == r[3]);
            };
            let (op, dst, src) = (i[0], usize::from(i[1] & 0xf), usize::from(i[1] >> 4));
            let off = i16::from_le_bytes([i[2], i[3]]);
            let imm = i32::from_le_bytes([i[4], i[5], i[6], i[7]]);
            let s = if op & 0x08 != 0 {
                r[src]
            } else {
                imm as i64 as u64
            };
            pc += 1;
            let mem = |r: &[u64; 11], stack: &[u8; 512], reg: usize, off: i16, n: usize| -> u64 {
                let addr = r[reg].wrapping_add(off as i64 as u64);
                let mut b = [0u8; 8];
                if reg == 10 {
                    let at = (512i64 + addr as i64 - 0x8000) as usize;
                    b[..n].copy_from_slice(&stack[at..at + n]);
                } else if addr == 0x9000 {
                    b[..4].copy_from_slice(&(packet.len() as u32).to_le_bytes());
                } else {
                    let at = (addr - 0x1000) as usize;
                    b[..n].copy_from_slice(&packet[at..at + n]);
                }
                u64::from_le_bytes(b)
            };
            r[10] = 0x8000;
            match op & 7 {
                0x04 | 0x07 => {
                    let wide = op & 7 == 0x07;
                    let a = r[dst];
                    let v = match op & 0xf0 {
                        0x00 => a.wrapping_add(s),
                        0x10 => a.wrapping_sub(s),
                        0x20 => a.wrapping_mul(s),
                        0x30 => a.checked_div(s & 0xffff_ffff).unwrap_or(0),
                        0x40 => a | s,
                        0x50 => a & s,
                        0x60 => a << (s & 31),
                        0x70 => (a & 0xffff_ffff) >> (s & 31),
                        0x80 => a.wrapping_neg(),
                        0x90 => a.checked_rem(s & 0xffff_ffff).unwrap_or(a),
                        0xa0 => a ^ s,
                        0xb0 => s,
                        0xd0 => match imm {
                            16 => u64::from((a as u16).swap_bytes()),
                            _ => u64::from((a as u32).swap_bytes()),
                        },
                        _ => panic!("op {op:#x}"),
                    };
                    r[dst] = if wide { v } else { v & 0xffff_ffff };
                }
                0x01 => {
                    let n = match op & 0x18 {
                        0x00 => 4,
                        0x08 => 2,
                        0x10 => 1,
                        _ => 8,
                    };
                    r[dst] = mem(&r, &stack, src, off, n);
                }
                0x02 | 0x03 => {
                    let n = if op & 0x18 == 0x18 { 8 } else { 4 };
                    let v = if op & 7 == 0x02 {
                        imm as i64 as u64
                    } else {
                        r[src]
                    };
                    let at = (512 + off as i64) as usize;
                    stack[at..at + n].copy_from_slice(&v.to_le_bytes()[..n]);
                }
                0x05 | 0x06 => {
                    let (a, b) = if op & 7 == 0x06 {
                        (r[dst] & 0xffff_ffff, s & 0xffff_ffff)
                    } else {
                        (r[dst], s)
                    };
                    let take = match op & 0xf0 {
                        0x00 => true,
                        0x10 => a == b,
                        0x20 => a > b,
                        0x30 => a >= b,
                        0x40 => a & b != 0,
                        _ => panic!("jump {op:#x}"),
                    };
                    if take {
                        pc = (pc as i64 + i64::from(off)) as usize;
                    }
                }
                _ => panic!("class {op:#x}"),
            }
        }
    }

    fn frame(ethertype: u16, rest: &[u8]) -> Vec<u8> {
        let mut f = vec![0xff; 12];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(rest);
        f
    }

    #[test]
    fn tcpdump_output_parses() {
        let p = parse_ddd(PROG).unwrap();
        assert_eq!(p.len(), 6);
        assert_eq!(
            p[1],
            Cbpf {
                code: 21,
                jt: 0,
                jf: 3,
                k: 0x88b5
            }
        );
        assert!(parse_ddd("3\n6 0 0 1\n").is_err(), "fewer than announced");
        assert!(parse_ddd("1\n6 0 0\n").is_err());
        assert!(parse_ddd("").is_err());
        assert!(parse_ddd("1\n999999 0 0 0\n").is_err());
    }

    #[test]
    fn the_translation_keeps_classic_semantics() {
        let code = to_ebpf(&parse_ddd(PROG).unwrap()).unwrap();
        assert_eq!(run(&code, &frame(0x88b5, &[0x12, 0x34, 0, 0])), 1);
        assert_eq!(run(&code, &frame(0x88b5, &[0x12, 0x35, 0, 0])), 0);
        assert_eq!(run(&code, &frame(0x0800, &[0x12, 0x34])), 0);
        // Too short for the second load: no match, no read past the end.
        assert_eq!(run(&code, &frame(0x88b5, &[0x12])), 0);
        assert!(
            parse_ddd(&format!("{PROG}6 0 0 0\n")).is_err(),
            "more than announced"
        );
        assert_eq!(run(&code, &[0xff; 6]), 0);
        assert_eq!(run(&reject_all(), &frame(0x88b5, &[0x12, 0x34])), 0);
    }

    #[test]
    fn indirect_loads_scratch_memory_and_alu() {
        // X = 4 * (p[14] & 0xf); A = p[X + 14] (a byte after an "IPv4
        // header"); M[3] = A; A = len: match when the packet is 30 bytes
        // long and M[3] is 7.
        let prog = [
            Cbpf {
                code: 0xb1,
                jt: 0,
                jf: 0,
                k: 14,
            }, // ldxb 4*([14]&0xf)
            Cbpf {
                code: 0x50,
                jt: 0,
                jf: 0,
                k: 14,
            }, // ldb [x + 14]
            Cbpf {
                code: 0x02,
                jt: 0,
                jf: 0,
                k: 3,
            }, // st M[3]
            Cbpf {
                code: 0x80,
                jt: 0,
                jf: 0,
                k: 0,
            }, // ld #len
            Cbpf {
                code: 0x15,
                jt: 0,
                jf: 3,
                k: 30,
            }, // jeq #30
            Cbpf {
                code: 0x60,
                jt: 0,
                jf: 0,
                k: 3,
            }, // ld M[3]
            Cbpf {
                code: 0x15,
                jt: 0,
                jf: 1,
                k: 7,
            }, // jeq #7
            Cbpf {
                code: 0x06,
                jt: 0,
                jf: 0,
                k: 96,
            }, // ret #96
            Cbpf {
                code: 0x06,
                jt: 0,
                jf: 0,
                k: 0,
            }, // ret #0
        ];
        let code = to_ebpf(&prog).unwrap();
        let mut p = vec![0u8; 30];
        p[14] = 0x45; // X = 20: [X + 14] is p[34], past the end
        assert_eq!(run(&code, &p), 0, "a load past the end: no match");
        let mut p = vec![0u8; 30];
        p[14] = 0x41; // X = 4
        p[18] = 7; // [X + 14]
        assert_eq!(run(&code, &p), 1);
        p[18] = 8;
        assert_eq!(run(&code, &p), 0);
        let mut long = vec![0u8; 31];
        long[14] = 0x41;
        long[18] = 7;
        assert_eq!(run(&code, &long), 0, "len is 31");
    }

    #[test]
    fn refused_programs_say_why() {
        let anc = [Cbpf {
            code: 0x20,
            jt: 0,
            jf: 0,
            k: 0xffff_f000,
        }];
        assert!(matches!(to_ebpf(&anc), Err(PfError::Translate(_))));
        let past = [Cbpf {
            code: 0x05,
            jt: 0,
            jf: 0,
            k: 5,
        }];
        assert!(to_ebpf(&past).is_err());
        assert_eq!(param_key("gadget_pf_"), Some("pf".into()));
        assert_eq!(param_key("gadget_pf_http"), Some("pf-http".into()));
        assert_eq!(param_key("other"), None);
    }
}
