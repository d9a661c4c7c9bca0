//! The book's own structure, read the way mdBook reads it: the chapters listed in
//! `SUMMARY.md`, the `{{#include file:anchor}}` directives and the anchors they select,
//! and the `<!-- claim: NAME -->` markers that tie a sentence to a test.
//!
//! mdBook renders a missing anchor as an empty listing and says nothing; the integrity
//! test (`tests/book/integrity.rs`) uses these functions to fail instead.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Where `dlbook regen` writes the results, relative to the book's root: one folder per
/// chapter (`ch01/`), plus `data/` for the data appendix.
pub const GENERATED: &str = "chapters/generated";

/// The folder of generated results of the book at `root`.
pub fn generated_dir(root: &Path) -> PathBuf {
    root.join(GENERATED)
}

/// The book's root: `start` or the nearest folder above it that holds `book.toml` and
/// `chapters/`.
pub fn find_root(start: &Path) -> Result<PathBuf> {
    let mut d = start.to_path_buf();
    loop {
        if d.join("book.toml").is_file() && d.join("chapters").is_dir() {
            return Ok(d);
        }
        if !d.pop() {
            anyhow::bail!(
                "run this inside the book's folder (no book.toml found above {})",
                start.display()
            );
        }
    }
}

/// One `{{#include path}}` or `{{#include path:anchor}}` directive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Include {
    /// The path as written, relative to the chapter file.
    pub path: String,
    /// The anchor, if one is named.
    pub anchor: Option<String>,
}

/// The chapter files listed in `SUMMARY.md`, in order, as paths relative to the chapter
/// folder (`ch01-00-foundations.md`).
pub fn summary_entries(summary: &str) -> Vec<String> {
    let mut out = vec![];
    for line in summary.lines() {
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            match after.find(')') {
                Some(j) => {
                    let target = &after[..j];
                    if !target.is_empty() && !target.contains("://") {
                        out.push(target.to_string());
                    }
                    rest = &after[j + 1..];
                }
                None => break,
            }
        }
    }
    out
}

/// The include directives of a Markdown text, in order.
pub fn includes(markdown: &str) -> Vec<Include> {
    let mut out = vec![];
    let mut rest = markdown;
    while let Some(i) = rest.find("{{#include ") {
        let after = &rest[i + "{{#include ".len()..];
        let Some(j) = after.find("}}") else { break };
        let spec = after[..j].trim();
        // A Windows drive letter would also contain ':'; the book has none.
        let (path, anchor) = match spec.split_once(':') {
            Some((p, a)) => (p.to_string(), Some(a.to_string())),
            None => (spec.to_string(), None),
        };
        out.push(Include { path, anchor });
        rest = &after[j + 2..];
    }
    out
}

/// The lines between `ANCHOR: name` and `ANCHOR_END: name`, with any other anchor lines
/// removed, as mdBook does. `None` if the anchor is not there.
pub fn anchor_body(source: &str, anchor: &str) -> Option<String> {
    let mut inside = false;
    let mut found = false;
    let mut body = String::new();
    for line in source.lines() {
        if let Some(name) = anchor_name(line, "ANCHOR:") {
            if name == anchor {
                inside = true;
                found = true;
            }
            continue;
        }
        if let Some(name) = anchor_name(line, "ANCHOR_END:") {
            if name == anchor {
                inside = false;
            }
            continue;
        }
        if inside {
            body.push_str(line);
            body.push('\n');
        }
    }
    found.then_some(body)
}

fn anchor_name<'a>(line: &'a str, tag: &str) -> Option<&'a str> {
    let i = line.find(tag)?;
    let rest = line[i + tag.len()..].trim_start();
    let end = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// The names in `<!-- claim: NAME -->` markers, in order.
pub fn claims(markdown: &str) -> Vec<String> {
    let mut out = vec![];
    let mut rest = markdown;
    while let Some(i) = rest.find("<!-- claim:") {
        let after = &rest[i + "<!-- claim:".len()..];
        let Some(j) = after.find("-->") else { break };
        out.push(after[..j].trim().to_string());
        rest = &after[j + 3..];
    }
    out
}

/// The names of the `#[test]` functions in a Rust source file.
pub fn test_fns(rust: &str) -> Vec<String> {
    let mut out = vec![];
    // After `#[test]`, attributes (possibly spanning several lines, like a multi-line
    // `#[should_panic(...)]`) and comments may come before the `fn` line.
    let mut pending = false;
    for line in rust.lines() {
        let t = line.trim();
        if t.starts_with("#[test]") {
            pending = true;
        } else if pending {
            if let Some(rest) = t.strip_prefix("fn ") {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.push(name);
                pending = false;
            } else if t.starts_with('}') || t.starts_with("mod ") || t.starts_with("let ")
            {
                pending = false;
            }
        }
    }
    out
}

/// The code blocks fenced as ```` ```rust ````, with their first line number (1-based).
pub fn rust_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut out = vec![];
    let mut current: Option<(usize, String)> = None;
    for (i, line) in markdown.lines().enumerate() {
        let t = line.trim_start();
        match &mut current {
            None if t.starts_with("```rust") => current = Some((i + 1, String::new())),
            Some(_) if t.starts_with("```") => out.extend(current.take()),
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    out
}

/// Image links `![alt](target)` of a Markdown text.
pub fn image_links(markdown: &str) -> Vec<String> {
    let mut out = vec![];
    let mut rest = markdown;
    while let Some(i) = rest.find("![") {
        let after = &rest[i + 2..];
        let Some(j) = after.find("](") else { break };
        let tail = &after[j + 2..];
        let Some(k) = tail.find(')') else { break };
        out.push(tail[..k].to_string());
        rest = &tail[k + 1..];
    }
    out
}

/// Fragments of text that look like a path of the machine the book was built on, or a
/// link to a local file: the book must speak only of itself.
pub fn machine_paths(text: &str) -> Vec<String> {
    const NEEDLES: [&str; 7] = [
        "/home/", "/root/", "/work/", "/tmp/", "/Users/", "file://", "C:\\",
    ];
    let mut out = vec![];
    for (i, line) in text.lines().enumerate() {
        for n in NEEDLES {
            if line.contains(n) {
                out.push(format!("line {}: contains `{n}`", i + 1));
            }
        }
    }
    out
}

/// All files under `dir` (recursively) whose name ends with `ext`, sorted.
pub fn files_with_ext(dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in
            std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().ends_with(ext) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_includes_and_anchors() {
        let md = "a {{#include ../code/x.rs:foo}} b {{#include g.md}}";
        let inc = includes(md);
        assert_eq!(inc.len(), 2);
        assert_eq!(inc[0].anchor.as_deref(), Some("foo"));
        assert_eq!(inc[1].anchor, None);
        let src = "x\n// ANCHOR: foo\nfn a() {}\n// ANCHOR: bar\nb\n// ANCHOR_END: bar\n// ANCHOR_END: foo\n";
        assert_eq!(anchor_body(src, "foo").unwrap(), "fn a() {}\nb\n");
        assert_eq!(anchor_body(src, "fo"), None);
        // `foo_bar` must not match `foo`.
        assert_eq!(
            anchor_body("// ANCHOR: foo_bar\nx\n// ANCHOR_END: foo_bar\n", "foo"),
            None
        );
    }

    #[test]
    fn finds_claims_and_tests() {
        assert_eq!(
            claims("x <!-- claim: a_b --> y <!-- claim:c -->"),
            ["a_b", "c"]
        );
        let rs = "#[test]\nfn one() {}\n#[test]\n#[ignore]\nfn two() {}\nfn three() {}\n";
        assert_eq!(test_fns(rs), ["one", "two"]);
        let rs = "#[test]\n#[should_panic(\n    expected = \"x\"\n)]\nfn four() {}\n";
        assert_eq!(test_fns(rs), ["four"]);
        assert_eq!(
            summary_entries("- [A](a.md)\n  - [B](b/c.md)\n"),
            ["a.md", "b/c.md"]
        );
    }
}
