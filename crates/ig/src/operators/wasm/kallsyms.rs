//! `kallsymsSymbolExists(name)`: 1 when `/proc/kallsyms` lists `name`
//! exactly once, 0 otherwise (missing, or ambiguous: several symbols of
//! that name, which libbpf and upstream refuse to attach to). Guests probe
//! kernel functions with it before choosing their programs (upstream's
//! fsnotify).
//!
//! The file is large (megabytes) and read in full per question, so
//! answers are kept for the life of the process: the kernel's symbols
//! change only when modules load.

use std::collections::HashMap;
use std::sync::Mutex;

use wasmtime::{Caller, Linker};

use super::state::{HostState, read_str};

/// Answers kept (guests ask about a handful of names).
const MAX_CACHED: usize = 4096;

static ANSWERS: Mutex<Option<HashMap<String, bool>>> = Mutex::new(None);

fn exists(name: &str) -> std::io::Result<bool> {
    let mut answers = ANSWERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let answers = answers.get_or_insert_with(HashMap::new);
    if let Some(a) = answers.get(name) {
        return Ok(*a);
    }
    let file = std::fs::File::open("/proc/kallsyms")?;
    let n = crate::symbols::count_kallsyms_named(std::io::BufReader::new(file), name)?;
    let found = n == 1;
    if answers.len() < MAX_CACHED {
        answers.insert(name.to_owned(), found);
    }
    Ok(found)
}

pub(super) fn add(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "ig",
        "kallsymsSymbolExists",
        |mut c: Caller<'_, HostState>, name: u64| -> u32 {
            let Some(name) = read_str(&mut c, name, "kallsymsSymbolExists") else {
                return 0;
            };
            match exists(&name) {
                Ok(found) => u32::from(found),
                Err(e) => {
                    c.data_mut().warn_once(
                        "kallsyms",
                        format_args!("kallsymsSymbolExists: reading /proc/kallsyms: {e}"),
                    );
                    0
                }
            }
        },
    )?;
    Ok(())
}
