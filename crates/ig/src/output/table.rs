//! Table output: a header, then one row per event, columns sized from the
//! fields' `columns.*` annotations.
//!
//! Rules: a column is `columns.width` wide (default from its kind, never
//! narrower than its header); `columns.alignment` is `left` or `right`
//! (numbers default to right); text longer than its column is cut with `…`,
//! numbers are never cut; the last column is neither padded nor cut, so long
//! values such as command lines stay whole. Floating-point numbers show
//! `columns.precision` decimals (2 unless set, as upstream's columns).

use std::io::Write as _;

use super::sink::{SharedWriter, Sink};
use crate::datasource::{Event, FieldId, Schema, ValueRef, copy};
use crate::pipeline::{Flow, Handler, HandlerError};

const DEFAULT_TEXT_WIDTH: usize = 16;
const DEFAULT_NUMBER_WIDTH: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Column {
    id: FieldId,
    header: String,
    width: usize,
    right: bool,
    numeric: bool,
    /// Decimals of floating-point values.
    precision: usize,
}

/// Decimals of a float column without `columns.precision` (upstream's).
const DEFAULT_PRECISION: usize = 2;

/// Prints events as a table (`-o columns`): a header, then a row per event,
/// columns sized from the annotations.
pub struct TablePrinter {
    /// The run's name, first on every row, when runs share the output
    /// (`ig run -f`).
    instance: Option<(Vec<u8>, Column)>,
    columns: Vec<Column>,
    header_done: bool,
    /// Array sources (snapshots, toppers) print a header per array.
    array: bool,
    /// Clear the terminal before each array (`cli.clear-screen-before`),
    /// only when the output is a terminal.
    clear_screen: bool,
    scratch: Vec<u8>,
    sink: Sink,
}

impl TablePrinter {
    /// The default columns of `schema`, into `out`.
    pub fn new(schema: &Schema, out: SharedWriter) -> Self {
        Self {
            instance: None,
            columns: columns(schema),
            header_done: false,
            array: schema.kind == crate::datasource::SourceKind::Array,
            clear_screen: false,
            scratch: Vec::new(),
            sink: Sink::new(out),
        }
    }

    /// Show `fields` (from `--fields`), in this order, instead of the
    /// default columns.
    #[must_use]
    pub fn with_fields(mut self, schema: &Schema, fields: &[FieldId]) -> Self {
        self.columns = columns_of(schema, fields);
        self
    }

    /// Redraw toppers in place when `terminal` is true and the data source
    /// asks for it (`cli.clear-screen-before: true`).
    pub fn on_terminal(mut self, schema: &Schema, terminal: bool) -> Self {
        self.clear_screen = terminal
            && schema
                .annotations
                .get("cli.clear-screen-before")
                .is_some_and(|v| v == "true");
        self
    }

    /// Start every row with an INSTANCE column holding `name`, `width`
    /// wide. Rows then share the output with other runs': a single
    /// source's header is written before each block of its rows that
    /// follows another printer's (an array's, before each array).
    #[must_use]
    pub fn with_instance(mut self, name: &str, width: usize) -> Self {
        let header = "INSTANCE";
        let column = Column {
            id: FieldId(0),
            header: header.to_owned(),
            width: width.max(header.len()).max(name.chars().count()),
            right: false,
            numeric: false,
            precision: 0,
        };
        self.instance = Some((name.as_bytes().to_vec(), column));
        if !self.array {
            let mut line = Vec::new();
            self.header_line(&mut line);
            self.sink.set_label(super::sink::Label::new(line));
            self.header_done = true;
        }
        self
    }

    /// The header line, into `buf`.
    fn header_line(&self, buf: &mut Vec<u8>) {
        if let Some((_, c)) = &self.instance {
            cell(buf, c.header.as_bytes(), c, self.columns.is_empty());
        }
        let last = self.columns.len().saturating_sub(1);
        for (i, c) in self.columns.iter().enumerate() {
            cell(buf, c.header.as_bytes(), c, i == last);
        }
        buf.push(b'\n');
    }

    fn header(&mut self) {
        if self.header_done {
            return;
        }
        self.header_done = true;
        let mut line = std::mem::take(&mut self.scratch);
        line.clear();
        self.header_line(&mut line);
        if let Some(buf) = self.sink.buf() {
            buf.extend_from_slice(&line);
        }
        self.scratch = line;
    }
}

/// The default columns, in display order (a formatted field next to its
/// source).
fn columns(schema: &Schema) -> Vec<Column> {
    columns_of(
        schema,
        &super::fields::defaults(schema, super::fields::Flavor::Table),
    )
}

fn columns_of(schema: &Schema, fields: &[FieldId]) -> Vec<Column> {
    fields
        .iter()
        .map(|&id| (id, schema.field(id)))
        .map(|(id, f)| {
            let numeric = f.kind.is_numeric();
            let header = f.column_name().to_uppercase();
            let parse = |k: &str| f.annotation(k).and_then(|v| v.trim().parse::<usize>().ok());
            let default = if numeric {
                DEFAULT_NUMBER_WIDTH
            } else {
                DEFAULT_TEXT_WIDTH
            };
            let mut width = parse("columns.width").unwrap_or(default);
            if let Some(min) = parse("columns.minwidth") {
                width = width.max(min);
            }
            if let Some(max) = parse("columns.maxwidth") {
                width = width.min(max);
            }
            let width = width.max(header.chars().count()).max(1);
            let right = match f.annotation("columns.alignment") {
                Some("right") => true,
                Some("left") => false,
                _ => numeric,
            };
            Column {
                id,
                header,
                width,
                right,
                numeric,
                precision: parse("columns.precision").unwrap_or(DEFAULT_PRECISION),
            }
        })
        .collect()
}

/// Append one cell: padded (and cut) to the column, then a separator.
fn cell(buf: &mut Vec<u8>, text: &[u8], c: &Column, last: bool) {
    let text = String::from_utf8_lossy(text);
    // Most cells are ASCII: their width is their length.
    let len = if text.is_ascii() {
        text.len()
    } else {
        text.chars().count()
    };
    if last {
        if c.right && len < c.width {
            buf.resize(buf.len() + c.width - len, b' ');
        }
        buf.extend_from_slice(text.as_bytes());
        return;
    }
    if len > c.width && !c.numeric {
        // Cut at a character boundary without building a new string.
        let cut = text
            .char_indices()
            .nth(c.width - 1)
            .map_or(text.len(), |(i, _)| i);
        buf.extend_from_slice(&text.as_bytes()[..cut]);
        buf.extend_from_slice("…".as_bytes());
    } else {
        let pad = c.width.saturating_sub(len);
        if c.right {
            buf.resize(buf.len() + pad, b' ');
        }
        buf.extend_from_slice(text.as_bytes());
        if !c.right {
            buf.resize(buf.len() + pad, b' ');
        }
    }
    buf.push(b' ');
}

/// Append the cell of `v` straight from the value, without the general
/// path's copy into a scratch buffer and its UTF-8 decoding, when that
/// prints the same bytes: integers in a numeric column, and strings of
/// printable ASCII (one terminal column per byte, nothing to replace).
/// Returns `false`, having written nothing, for anything else.
///
/// Hot path of `-o columns`: nearly every cell of a syscall tracer's row is
/// one of these, and the general path cost ~500 instructions per cell.
#[inline]
fn fast_cell(buf: &mut Vec<u8>, v: ValueRef<'_>, c: &Column, last: bool) -> bool {
    match v {
        // Numbers are never cut, so their cell is padding and digits.
        ValueRef::U64(n) if c.numeric => number_cell(buf, false, n, c, last),
        ValueRef::I64(n) if c.numeric => number_cell(buf, n < 0, n.unsigned_abs(), c, last),
        ValueRef::Str(s) if !c.numeric && super::json::plain_ascii(s) => {
            let len = s.len();
            if last {
                if c.right && len < c.width {
                    pad(buf, c.width - len);
                }
                copy::extend(buf, s);
            } else if len > c.width {
                // One byte per character: cut at `width - 1`, as `cell`.
                copy::extend(buf, &s[..c.width - 1]);
                buf.extend_from_slice("…".as_bytes());
                buf.push(b' ');
            } else {
                let n = c.width - len;
                if c.right {
                    pad(buf, n);
                }
                copy::extend(buf, s);
                if !c.right {
                    pad(buf, n);
                }
                buf.push(b' ');
            }
        }
        _ => return false,
    }
    true
}

/// The cell of an integer (`-` first when `negative`) in a numeric column.
#[inline]
fn number_cell(buf: &mut Vec<u8>, negative: bool, n: u64, c: &Column, last: bool) {
    let len = n.checked_ilog10().unwrap_or(0) as usize + 1 + usize::from(negative);
    let n_pad = c.width.saturating_sub(len);
    if c.right && (n_pad > 0) {
        pad(buf, n_pad);
    }
    if negative {
        buf.push(b'-');
    }
    super::json::push_u64(buf, n);
    if !last {
        if !c.right {
            pad(buf, n_pad);
        }
        buf.push(b' ');
    }
}

/// Append `n` spaces.
#[inline]
fn pad(buf: &mut Vec<u8>, n: usize) {
    const SPACES: &[u8; 64] = &[b' '; 64];
    if n <= SPACES.len() {
        copy::extend(buf, &SPACES[..n]);
    } else {
        buf.resize(buf.len() + n, b' ');
    }
}

/// Plain text of a value: strings unquoted, bytes in hex, floats with
/// `precision` decimals.
fn text(scratch: &mut Vec<u8>, v: ValueRef<'_>, precision: usize) {
    scratch.clear();
    let _ = match v {
        ValueRef::None => Ok(()),
        ValueRef::Bool(b) => write!(scratch, "{b}"),
        ValueRef::U64(n) => {
            super::json::push_u64(scratch, n);
            Ok(())
        }
        ValueRef::I64(n) => {
            if n < 0 {
                scratch.push(b'-');
            }
            super::json::push_u64(scratch, n.unsigned_abs());
            Ok(())
        }
        ValueRef::F64(f) => write!(scratch, "{f:.precision$}"),
        ValueRef::Str(s) => {
            // Control characters would break the row; show them as spaces.
            scratch.extend(
                s.iter()
                    .map(|&b| if b < 0x20 || b == 0x7f { b' ' } else { b }),
            );
            Ok(())
        }
        ValueRef::Bytes(b) => b.iter().try_for_each(|x| write!(scratch, "{x:02x}")),
    };
}

impl Handler for TablePrinter {
    fn on_event(&mut self, schema: &Schema, event: &mut Event) -> Flow {
        self.header();
        let Some(buf) = self.sink.buf() else {
            return Flow::Continue;
        };
        if let Some((name, c)) = &self.instance {
            cell(buf, name, c, self.columns.is_empty());
        }
        let last = self.columns.len().saturating_sub(1);
        for (i, c) in self.columns.iter().enumerate() {
            let v = event.get(schema.field(c.id));
            if !fast_cell(buf, v, c, i == last) {
                text(&mut self.scratch, v, c.precision);
                cell(buf, &self.scratch, c, i == last);
            }
        }
        buf.push(b'\n');
        self.sink.record_done();
        Flow::Continue
    }

    fn on_array(&mut self, schema: &Schema, events: &mut Vec<Event>) -> Flow {
        if self.clear_screen
            && let Some(buf) = self.sink.buf()
        {
            // Cursor home, then clear the screen.
            buf.extend_from_slice(b"\x1b[H\x1b[2J");
        }
        self.header_done = false;
        self.header();
        for e in events.iter_mut() {
            self.on_event(schema, e);
        }
        Flow::Continue
    }

    fn flush(&mut self) -> Result<(), HandlerError> {
        if !self.array {
            self.header();
        }
        self.sink.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasource::{FieldKind, SchemaBuilder, SourceKind};
    use crate::output::shared;
    use crate::output::sink::Capture;

    #[test]
    fn header_widths_alignment_truncation() {
        let mut b = SchemaBuilder::new("exec", SourceKind::Single, 48);
        let proc = b
            .add_raw("proc".into(), FieldKind::Struct, 0, 20, None)
            .unwrap();
        let comm = b
            .add_raw("proc.comm".into(), FieldKind::CString, 0, 16, Some(proc))
            .unwrap();
        b.field_mut(comm)
            .annotations
            .insert("columns.alias".into(), "comm".into());
        b.field_mut(comm)
            .annotations
            .insert("columns.width".into(), "6".into());
        let pid = b
            .add_raw("proc.pid".into(), FieldKind::U32, 16, 4, Some(proc))
            .unwrap();
        b.field_mut(pid)
            .annotations
            .insert("columns.alias".into(), "pid".into());
        b.field_mut(pid)
            .annotations
            .insert("columns.width".into(), "3".into());
        let hid = b
            .add_raw("mntns".into(), FieldKind::U64, 24, 8, None)
            .unwrap();
        b.field_mut(hid)
            .annotations
            .insert("columns.hidden".into(), "true".into());
        b.add_raw("args".into(), FieldKind::CString, 32, 16, None)
            .unwrap();
        let s = b.build();

        let cap = Capture::default();
        let mut p = TablePrinter::new(&s, shared(cap.clone()));
        let mut ev = Event::new(&s);
        let mut raw = vec![0u8; 48];
        raw[..11].copy_from_slice(b"longcommand");
        raw[16..20].copy_from_slice(&123_456u32.to_ne_bytes());
        raw[32..44].copy_from_slice(b"a b c d e f ");
        ev.set_raw(&raw);
        p.on_event(&s, &mut ev);
        p.flush().unwrap();
        let out = String::from_utf8(cap.0.borrow().clone()).unwrap();
        assert_eq!(out, "COMM   PID ARGS\nlongc… 123456 a b c d e f \n");
    }

    /// Two runs' printers on one stream (`ig run -f`): every row starts
    /// with its instance, and each block of rows sits under the header of
    /// its own schema, repeated whenever the stream switches printer.
    #[test]
    fn instances_sharing_a_stream_get_their_column_and_a_header_per_block() {
        let schema = |name: &str, field: &str| {
            let mut b = SchemaBuilder::new(name, SourceKind::Single, 4);
            b.add_raw(field.into(), FieldKind::U32, 0, 4, None).unwrap();
            b.build()
        };
        let (sa, sb) = (schema("a", "alpha"), schema("b", "beta"));
        let cap = Capture::default();
        let out = shared(cap.clone());
        let mut a = TablePrinter::new(&sa, out.clone()).with_instance("one", 10);
        let mut b = TablePrinter::new(&sb, out).with_instance("second", 10);
        let row = |p: &mut TablePrinter, s: &Schema, n: u32| {
            let mut ev = Event::new(s);
            ev.set_raw(&n.to_ne_bytes());
            p.on_event(s, &mut ev);
        };
        // Nothing before the first row: no empty header.
        a.flush().unwrap();
        row(&mut a, &sa, 1);
        row(&mut a, &sa, 2);
        a.flush().unwrap();
        row(&mut a, &sa, 3);
        a.flush().unwrap();
        row(&mut b, &sb, 4);
        b.flush().unwrap();
        row(&mut a, &sa, 5);
        a.flush().unwrap();
        let got = String::from_utf8(cap.0.borrow().clone()).unwrap();
        assert_eq!(
            got,
            "INSTANCE      ALPHA\none               1\none               2\none               3\n\
             INSTANCE       BETA\nsecond            4\n\
             INSTANCE      ALPHA\none               5\n"
        );
    }

    /// The fast path of a cell prints what the general path prints, for
    /// every alignment, width and kind of value it takes, at every length
    /// around the width, last column or not.
    #[test]
    fn fast_cells_print_what_the_general_path_prints() {
        let texts: [&[u8]; 8] = [
            b"",
            b"a",
            b"cat",
            b"/usr/lib/x86_64-linux-gnu/libc.so.6",
            b"O_RDONLY|O_CLOEXEC",
            b"q\"uote\\",
            b"tab\there",
            "caf\u{e9}".as_bytes(),
        ];
        let mut values: Vec<ValueRef<'_>> = texts.iter().map(|t| ValueRef::Str(t)).collect();
        for n in [0u64, 7, 42, 99_999, 12_345_678, u64::MAX] {
            values.push(ValueRef::U64(n));
        }
        for n in [0i64, -1, -42, 123_456, i64::MIN, i64::MAX] {
            values.push(ValueRef::I64(n));
        }
        let mut fast_hits = 0;
        for width in 1..=22 {
            for right in [false, true] {
                for numeric in [false, true] {
                    let c = Column {
                        id: FieldId(0),
                        header: "H".into(),
                        width,
                        right,
                        numeric,
                        precision: 2,
                    };
                    for v in &values {
                        for last in [false, true] {
                            let (mut fast, mut slow, mut scratch) =
                                (vec![b'>'], vec![b'>'], vec![]);
                            if fast_cell(&mut fast, *v, &c, last) {
                                fast_hits += 1;
                                text(&mut scratch, *v, c.precision);
                                cell(&mut slow, &scratch, &c, last);
                                assert_eq!(
                                    String::from_utf8_lossy(&fast),
                                    String::from_utf8_lossy(&slow),
                                    "{v:?} {c:?} last={last}"
                                );
                            } else {
                                assert_eq!(fast, b">", "nothing written when not taken");
                            }
                        }
                    }
                }
            }
        }
        assert!(fast_hits > 1000, "the fast path is taken: {fast_hits}");
    }

    #[test]
    fn header_appears_on_flush_without_events() {
        let mut b = SchemaBuilder::new("x", SourceKind::Single, 4);
        b.add_raw("n".into(), FieldKind::U32, 0, 4, None).unwrap();
        let s = b.build();
        let cap = Capture::default();
        let mut p = TablePrinter::new(&s, shared(cap.clone()));
        p.flush().unwrap();
        p.flush().unwrap();
        assert_eq!(
            String::from_utf8(cap.0.borrow().clone()).unwrap(),
            "       N\n"
        );
    }

    #[test]
    fn floats_show_their_precision() {
        let mut b = SchemaBuilder::new("x", SourceKind::Array, 0);
        let a = b.add_owned("a".into(), FieldKind::F64, None).unwrap();
        let p1 = b.add_owned("b".into(), FieldKind::F64, None).unwrap();
        b.field_mut(p1)
            .annotations
            .insert("columns.precision".into(), "1".into());
        let s = b.build();
        let cap = Capture::default();
        let mut p = TablePrinter::new(&s, shared(cap.clone()));
        let mut ev = Event::new(&s);
        ev.set_value(s.field(a), crate::datasource::Value::F64(83.211_288));
        ev.set_value(s.field(p1), crate::datasource::Value::F64(0.05));
        p.on_event(&s, &mut ev);
        p.flush().unwrap();
        assert_eq!(
            String::from_utf8(cap.0.borrow().clone()).unwrap(),
            "       A        B
   83.21      0.1
"
        );
    }
}
