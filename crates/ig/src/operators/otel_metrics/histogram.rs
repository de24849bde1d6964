//! Histograms for people and for programs: the terminal rendering
//! upstream prints for `metrics.print` data sources (a port of bcc's
//! `print_log2_hist`: a header with the unit, then one row per bucket
//! `start -> end : count |stars|`, 40 stars for the fullest bucket), and
//! the JSON users asked upstream for (`{"unit":…,"intervals":[{"count",
//! "start","end"}]}`, upstream issue #285). Pure.

use std::fmt::Write as _;

/// One bucket: `count` values in `(start, end]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    /// How many.
    pub count: u64,
    /// Lower end.
    pub start: u64,
    /// Upper end.
    pub end: u64,
}

/// The intervals of a histogram with upper `bounds` and per-bucket
/// `counts` (the bucket above the last bound is left out, as upstream
/// does): the first starts at 0, each next one where the previous ended.
pub fn intervals(bounds: &[f64], counts: &[u64]) -> Vec<Interval> {
    let mut last = 0u64;
    bounds
        .iter()
        .zip(counts)
        .map(|(b, c)| {
            // Bounds are whole numbers for slot arrays; a fraction of a
            // scalar histogram's bound is cut, as upstream's uint64().
            let end = if *b <= 0.0 { 0 } else { *b as u64 };
            let i = Interval {
                count: *c,
                start: last,
                end,
            };
            last = end;
            i
        })
        .collect()
}

/// The terminal rendering of one histogram, exactly as upstream's
/// `Histogram.String()`: empty for no intervals.
pub fn render(unit: &str, intervals: &[Interval], out: &mut String) {
    if intervals.is_empty() {
        return;
    }
    let max = intervals.iter().map(|i| i.count).max().unwrap_or(0);
    // Go pads by runes; `µ` is one.
    let pad = 16usize.saturating_sub(unit.chars().count());
    let _ = writeln!(out, "{:8}{unit}{:pad$} : count    distribution", "", "");
    for i in intervals {
        let stars = if max == 0 {
            0
        } else {
            (u128::from(i.count) * 40 / u128::from(max)) as usize
        };
        let _ = writeln!(
            out,
            "{:>10} -> {:<10} : {:<8} |{}{}|",
            i.start,
            i.end,
            i.count,
            "*".repeat(stars),
            " ".repeat(40 - stars)
        );
    }
}

/// `{"unit":"µs","intervals":[{"count":0,"start":0,"end":1},…]}` (the
/// JSON of upstream's Histogram type, whose `unit` is left out when
/// empty), with `"labels":{…}` added for a series with key fields.
pub fn json(unit: &str, labels: &[(String, String)], intervals: &[Interval], out: &mut String) {
    out.push('{');
    if !unit.is_empty() {
        out.push_str("\"unit\":");
        json_str(unit, out);
        out.push(',');
    }
    if !labels.is_empty() {
        out.push_str("\"labels\":{");
        for (n, (k, v)) in labels.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            json_str(k, out);
            out.push(':');
            json_str(v, out);
        }
        out.push_str("},");
    }
    out.push_str("\"intervals\":[");
    for (n, i) in intervals.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"count\":{},\"start\":{},\"end\":{}}}",
            i.count, i.start, i.end
        );
    }
    out.push_str("]}");
}

fn json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upstream's rendering of a 27-slot latency histogram (the layout of
    /// its profile_blockio README): every row printed, +Inf left out.
    #[test]
    fn renders_as_upstream() {
        let bounds: Vec<f64> = (0..5).map(|i| f64::from(1u32 << i)).collect();
        let iv = intervals(&bounds, &[0, 3, 12, 6, 0, 99]);
        let mut out = String::new();
        render("µs", &iv, &mut out);
        assert_eq!(
            out,
            "        µs               : count    distribution\n\
             \x20        0 -> 1          : 0        |                                        |\n\
             \x20        1 -> 2          : 3        |**********                              |\n\
             \x20        2 -> 4          : 12       |****************************************|\n\
             \x20        4 -> 8          : 6        |********************                    |\n\
             \x20        8 -> 16         : 0        |                                        |\n"
        );
        let mut j = String::new();
        json("µs", &[], &iv[..2], &mut j);
        assert_eq!(
            j,
            r#"{"unit":"µs","intervals":[{"count":0,"start":0,"end":1},{"count":3,"start":1,"end":2}]}"#
        );
        let mut j = String::new();
        json("", &[("proc_comm".into(), "dd".into())], &[], &mut j);
        assert_eq!(j, r#"{"labels":{"proc_comm":"dd"},"intervals":[]}"#);
    }
}
