//! Tables as Markdown pipe tables.

use std::fmt::Write as _;

use super::{Table, Value};

/// A table as a Markdown pipe table (numeric columns right-aligned), its caption in
/// italics below.
pub fn render_table(t: &Table) -> String {
    let mut md = String::new();
    let headers: Vec<&str> = t.columns.iter().map(|c| c.header.as_str()).collect();
    let _ = writeln!(md, "| {} |", headers.join(" | "));
    let aligns: Vec<&str> = t
        .columns
        .iter()
        .enumerate()
        .map(|(j, _)| {
            let numeric = t
                .rows
                .iter()
                .any(|r| !matches!(r.get(j), Some(Value::Text(_))));
            if numeric {
                "---:"
            } else {
                "---"
            }
        })
        .collect();
    let _ = writeln!(md, "|{}|", aligns.join("|"));
    for row in &t.rows {
        let cells: Vec<String> = t
            .columns
            .iter()
            .zip(row)
            .map(|(c, v)| v.show(c.format).replace('|', "\\|"))
            .collect();
        let _ = writeln!(md, "| {} |", cells.join(" | "));
    }
    let _ = writeln!(md);
    let _ = writeln!(md, "*{}*", t.caption);
    md
}
