//! The fields of a gadget's data sources as `ig run IMAGE --help` lists
//! them: the final schemas (after every operator: `timestamp`, `error`,
//! `proc.creds.user`, `runtime.*`, `k8s.*`...), which the library
//! computes without the kernel (`ig::run::GadgetRun::describe`). Only the
//! wording is here.

use std::fmt::Write as _;

use ig::datasource::{FieldKind, Schema};

/// The fields a user can name: visible leaves (no `__` member, no
/// struct), sorted by full name as upstream lists them.
pub fn listed(schema: &Schema) -> Vec<&ig::datasource::FieldDef> {
    let mut fields: Vec<_> = schema
        .fields()
        .iter()
        .filter(|f| !f.hidden && f.kind != FieldKind::Struct)
        .collect();
    fields.sort_by(|a, b| a.name.cmp(&b.name));
    fields
}

/// The text `ig run IMAGE --help` ends with: per data source, each field
/// with its type, its column name when it differs, whether tables show it
/// by default, its description and its values (upstream's `value.one-of`).
pub fn help(sources: &[std::sync::Arc<Schema>]) -> String {
    let mut s = String::from(
        "Available data sources / fields (what --fields, -F/--filter and --sort take: the full name,\nor the column name a table's header shows where only one field has it):\n",
    );
    if sources.is_empty() {
        s.push_str("  none: the gadget declares no data source\n");
    }
    for ds in sources {
        let _ = writeln!(s, "  {:?} (data source):", ds.name);
        for f in listed(ds) {
            let mut about = vec![f.kind.name().to_owned()];
            let column = f.column_name();
            if column != f.name {
                about.push(format!("column {}", column.to_uppercase()));
            }
            if f.hidden_in_tables() {
                about.push("not in tables by default".to_owned());
            }
            let _ = writeln!(s, "    {}  ({})", f.name, about.join(", "));
            if let Some(d) = f.annotation("description").filter(|d| !d.trim().is_empty()) {
                let _ = writeln!(s, "      {}", d.trim());
            }
            if let Some(v) = f.annotation("value.one-of") {
                let _ = writeln!(s, "      One of: {v}");
            }
        }
    }
    s
}
