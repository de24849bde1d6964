//! Syscall names, numbers and declarations (argument names, which are
//! pointers), as the running kernel describes them.

use crate::helpers::{any_to_buf_ptr_mut, from_c_string, out_buf, string_to_buf_ptr};

#[link(wasm_import_module = "ig")]
extern "C" {
    #[link_name = "getSyscallName"]
    fn ig_syscall_name(id: u32, dst: u64) -> u32;
    #[link_name = "getSyscallID"]
    fn ig_syscall_id(name: u64) -> i32;
    #[link_name = "getSyscallDeclaration"]
    fn ig_syscall_declaration(name: u64, dst: u64) -> u32;
}

/// Flag of an argument that is a pointer.
pub const IS_POINTER_FLAG: u32 = 1;
/// Room for a syscall's name.
pub const MAX_SYSCALL_LENGTH: usize = 64;

pub type Result<T> = std::result::Result<T, String>;

/// One argument, as the host writes it.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct RawParam {
    name: [u8; 32],
    flags: u32,
}

/// A declaration, as the host writes it (252 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct RawDeclaration {
    name: [u8; 32],
    nr_params: u8,
    _pad: [u8; 3],
    params: [RawParam; 6],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyscallParam {
    pub name: String,
    pub is_pointer: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyscallDeclaration {
    pub name: String,
    pub params: Vec<SyscallParam>,
}

pub fn get_syscall_name(id: u16) -> Result<String> {
    let mut dst = [0u8; MAX_SYSCALL_LENGTH];
    // SAFETY: `dst` is writable for its length for the call.
    match unsafe { ig_syscall_name(u32::from(id), out_buf(&mut dst)) } {
        0 => Ok(from_c_string(&dst)),
        _ => Err(format!("no name for syscall {id}")),
    }
}

pub fn get_syscall_id(name: &str) -> Result<i32> {
    // SAFETY: `name` outlives the call; the host only reads it.
    match unsafe { ig_syscall_id(string_to_buf_ptr(name).0) } {
        -1 => Err(format!("no syscall {name}")),
        id => Ok(id),
    }
}

pub fn get_syscall_declaration(name: &str) -> Result<SyscallDeclaration> {
    let mut raw = RawDeclaration::default();
    let dst = any_to_buf_ptr_mut(&mut raw)?.0;
    // SAFETY: `raw` is writable for its size and `name` readable, both
    // alive for the call.
    if unsafe { ig_syscall_declaration(string_to_buf_ptr(name).0, dst) } != 0 {
        return Err(format!("no declaration of syscall {name}"));
    }
    let n = usize::from(raw.nr_params).min(raw.params.len());
    Ok(SyscallDeclaration {
        name: from_c_string(&raw.name),
        params: raw.params[..n]
            .iter()
            .map(|p| SyscallParam {
                name: from_c_string(&p.name),
                is_pointer: p.flags & IS_POINTER_FLAG != 0,
            })
            .collect(),
    })
}
