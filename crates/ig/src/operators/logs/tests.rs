use super::*;

#[test]
fn logfmt_quotes_what_needs_it() {
    let mut b = Vec::new();
    logfmt_value(&mut b, ValueRef::Str(b"cat"));
    b.push(b' ');
    logfmt_value(&mut b, ValueRef::Str(b"a b"));
    b.push(b' ');
    logfmt_value(&mut b, ValueRef::Str(b"x=\"1\""));
    b.push(b' ');
    logfmt_value(&mut b, ValueRef::Str(b""));
    b.push(b' ');
    logfmt_value(&mut b, ValueRef::Bytes(&[0xde, 0xad]));
    b.push(b' ');
    logfmt_value(&mut b, ValueRef::I64(-3));
    assert_eq!(
        String::from_utf8(b).unwrap(),
        r#"cat "a b" "x=\"1\"" "" dead -3"#
    );
}

#[test]
fn clock_is_rfc3339_nano() {
    let mut b = Vec::new();
    Clock::default().write(&mut b);
    let s = String::from_utf8(b).unwrap();
    assert!(s.ends_with('Z'), "{s}");
    assert_eq!(&s[4..5], "-");
    assert_eq!(&s[10..11], "T");
    assert!(
        !s.trim_end_matches('Z').ends_with('0') || !s.contains('.'),
        "{s}"
    );
}

#[test]
fn settings_as_upstream_reads_them() {
    let mut c = LogsConfig::default();
    c.set("enabled", "true").unwrap();
    c.set("channel", "file").unwrap();
    assert!(matches!(c.check(), Err(LogsError::NoFilename)));
    c.set("filename", "/tmp/x.log").unwrap();
    c.set("format", "logfmt").unwrap();
    c.set("max-size-mb", "1").unwrap();
    c.set("compress", "T").unwrap();
    c.check().unwrap();
    assert_eq!(c.format, Format::Logfmt);
    assert!(c.compress);
    let e = c.set("channel", "syslog").unwrap_err().to_string();
    assert_eq!(
        e,
        "operator.logs.channel: \"syslog\": stdout, stderr or file"
    );
    assert!(c.set("max-size-mb", "0").is_err());
}
