//! `/proc/PID/maps`: which file is mapped where, for the executable
//! mappings only (stack addresses are code addresses).

/// One executable, file-backed mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// First address.
    pub start: u64,
    /// Address past the end.
    pub end: u64,
    /// Offset in the file of the byte at `start`.
    pub offset: u64,
    /// Device (`major:minor`, as in the file) and inode of the file.
    pub dev: String,
    /// The file's inode.
    pub inode: u64,
    /// The path as the process sees it (relative to its root), without a
    /// ` (deleted)` suffix.
    pub path: String,
    /// The file was deleted since it was mapped.
    pub deleted: bool,
}

impl Mapping {
    /// The file offset of `addr`, which must lie in the mapping.
    pub fn file_offset(&self, addr: u64) -> u64 {
        addr - self.start + self.offset
    }
}

/// The executable file mappings of `text`, sorted by start. Anonymous
/// mappings and pseudo-files (`[vdso]`, `[stack]`) are left out; so are
/// lines that do not parse.
pub fn parse_maps(text: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = text.lines().filter_map(parse_line).collect();
    out.sort_by_key(|m| m.start);
    out
}

fn parse_line(line: &str) -> Option<Mapping> {
    // start-end perms offset dev inode   path (the path may hold spaces)
    let mut rest = line;
    let mut field = || {
        let r = rest.trim_start();
        let end = r.find(' ').unwrap_or(r.len());
        let (f, tail) = r.split_at(end);
        rest = tail;
        f
    };
    let range = field();
    let perms = field();
    let offset = field();
    let dev = field();
    let inode = field();
    let path = rest.trim();
    if !perms.contains('x') || !path.starts_with('/') {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    let (path, deleted) = match path.strip_suffix(" (deleted)") {
        Some(p) => (p, true),
        None => (path, false),
    };
    Some(Mapping {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        offset: u64::from_str_radix(offset, 16).ok()?,
        dev: dev.to_owned(),
        inode: inode.parse().ok()?,
        path: path.to_owned(),
        deleted,
    })
}

/// The mapping holding `addr`, in mappings sorted by start.
pub fn find(maps: &[Mapping], addr: u64) -> Option<&Mapping> {
    let i = maps.partition_point(|m| m.start <= addr);
    let m = maps.get(i.checked_sub(1)?)?;
    (addr < m.end).then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0a00000-55d0c0a02000 r--p 00000000 08:01 1234                       /usr/bin/my prog
55d0c0a02000-55d0c0a05000 r-xp 00002000 08:01 1234                       /usr/bin/my prog
55d0c0c00000-55d0c0c21000 rw-p 00000000 00:00 0                          [heap]
7f0000000000-7f0000028000 r--p 00000000 08:01 99                         /usr/lib/libc.so.6
7f0000028000-7f00001bd000 r-xp 00028000 08:01 99                         /usr/lib/libc.so.6
7f0000300000-7f0000301000 r-xp 00001000 08:01 77                         /tmp/old.so (deleted)
7fff00000000-7fff00002000 r-xp 00000000 00:00 0                          [vdso]
garbage line
";

    #[test]
    fn keeps_executable_file_mappings() {
        let m = parse_maps(MAPS);
        assert_eq!(m.len(), 3, "{m:?}");
        assert_eq!(m[0].path, "/usr/bin/my prog");
        assert_eq!(
            (m[0].start, m[0].end, m[0].offset),
            (0x55d0c0a02000, 0x55d0c0a05000, 0x2000)
        );
        assert_eq!((m[0].dev.as_str(), m[0].inode), ("08:01", 1234));
        assert_eq!(m[1].path, "/usr/lib/libc.so.6");
        assert!(m[2].deleted && m[2].path == "/tmp/old.so");
    }

    #[test]
    fn finds_the_mapping_of_an_address() {
        let m = parse_maps(MAPS);
        let libc = find(&m, 0x7f0000028010).unwrap();
        assert_eq!(libc.file_offset(0x7f0000028010), 0x28010);
        assert_eq!(find(&m, 0x7f00001bd000), None);
        assert_eq!(find(&m, 0x55d0c0a01000), None);
        assert_eq!(find(&m, 0x10), None);
    }
}
