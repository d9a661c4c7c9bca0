//! The integrity checks: what keeps the book honest, because mdBook itself renders a
//! missing anchor as an empty listing and says nothing.
//!
//! - every SUMMARY entry exists, and every chapter file is listed;
//! - every `{{#include file:anchor}}` resolves to a non-empty anchor;
//! - no Rust is pasted into a chapter (a ```` ```rust ```` block holds only includes);
//! - every `<!-- claim: NAME -->` has a `#[test] fn NAME` in its chapter's test modules;
//! - every image a chapter shows exists;
//! - every generated `.md`/`.svg` equals the rendering of its JSON, every experiment has
//!   its results, and nothing in `generated/` is unowned;
//! - notebooks hold no stored outputs and start from the library;
//! - no machine paths anywhere in the book, the notebooks or the README.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use dlbook::book;
use dlbook::experiments;

/// The first code cell of every notebook: the library and the crates its cells name.
const NOTEBOOK_HEADER: &str = ":dep dlbook = { path = \"..\" }
:dep ndarray = \"0.17\"
:dep rand = \"0.9\"
:dep rand_chacha = \"0.9\"";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

/// The chapter sources: every `.md` under `chapters/` except generated results.
fn chapter_files() -> Vec<PathBuf> {
    let ch = root().join("chapters");
    book::files_with_ext(&ch, ".md")
        .unwrap()
        .into_iter()
        .filter(|p| !p.starts_with(ch.join("generated")))
        .collect()
}

fn rel(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

/// Fails with every problem found, not just the first.
fn assert_none(what: &str, problems: Vec<String>) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}

#[test]
fn summary_lists_every_chapter_file_and_only_existing_ones() {
    let ch = root().join("chapters");
    let entries = book::summary_entries(&read(&ch.join("SUMMARY.md")));
    let mut problems = vec![];
    let listed: BTreeSet<PathBuf> = entries.iter().map(|e| ch.join(e)).collect();
    for e in &entries {
        if !ch.join(e).is_file() {
            problems.push(format!("SUMMARY.md lists `{e}`, which does not exist"));
        }
    }
    for f in chapter_files() {
        if f.ends_with("SUMMARY.md") {
            continue;
        }
        if !listed.contains(&f) {
            problems.push(format!("{} is not listed in SUMMARY.md", rel(&f)));
        }
    }
    // The thirteen weeks are all in the sidebar, in order.
    let weeks: Vec<u32> = entries
        .iter()
        .filter_map(|e| {
            e.strip_prefix("ch")?
                .split_once("-00-")
                .map(|(n, _)| n.parse().ok())?
        })
        .collect();
    if weeks != (1..=13).collect::<Vec<_>>() {
        problems.push(format!(
            "week landing pages in SUMMARY.md: {weeks:?}, expected 1..=13"
        ));
    }
    assert_none("SUMMARY.md", problems);
}

#[test]
fn every_include_resolves_to_a_non_empty_anchor() {
    let mut problems = vec![];
    let mut n = 0;
    for f in chapter_files() {
        let dir = f.parent().unwrap();
        for inc in book::includes(&read(&f)) {
            n += 1;
            let target = dir.join(&inc.path);
            let Ok(src) = std::fs::read_to_string(&target) else {
                problems.push(format!(
                    "{}: {{{{#include {}}}}}: no such file",
                    rel(&f),
                    inc.path
                ));
                continue;
            };
            let body = match &inc.anchor {
                Some(a) => match book::anchor_body(&src, a) {
                    Some(b) => b,
                    None => {
                        problems.push(format!(
                            "{}: no anchor `{a}` in {}",
                            rel(&f),
                            inc.path
                        ));
                        continue;
                    }
                },
                None => src,
            };
            if body.trim().is_empty() {
                problems.push(format!(
                    "{}: include {}:{:?} is empty",
                    rel(&f),
                    inc.path,
                    inc.anchor
                ));
            }
        }
    }
    assert!(
        n > 0,
        "the book includes nothing: the check would be vacuous"
    );
    assert_none("includes", problems);
}

#[test]
fn no_rust_is_pasted_into_a_chapter() {
    let mut problems = vec![];
    for f in chapter_files() {
        for (line, body) in book::rust_blocks(&read(&f)) {
            for l in body.lines().filter(|l| !l.trim().is_empty()) {
                if !(l.trim().starts_with("{{#include ") && l.trim().ends_with("}}")) {
                    problems.push(format!(
                        "{}:{line}: pasted Rust `{}`",
                        rel(&f),
                        l.trim()
                    ));
                    break;
                }
            }
        }
    }
    assert_none("pasted code", problems);
}

/// The `#[test]` functions of the test modules of chapter `NN` (`chNN_*.rs`).
fn chapter_tests(nn: &str) -> BTreeSet<String> {
    let dir = root().join("tests/book");
    let mut out = BTreeSet::new();
    for p in book::files_with_ext(&dir, ".rs").unwrap() {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with(&format!("ch{nn}_")) {
            out.extend(book::test_fns(&read(&p)));
        }
    }
    out
}

#[test]
fn every_claim_has_its_test() {
    let mut problems = vec![];
    let mut n = 0;
    for f in chapter_files() {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let claims = book::claims(&read(&f));
        if claims.is_empty() {
            continue;
        }
        let Some(nn) = name.strip_prefix("ch").map(|s| &s[..2]) else {
            problems.push(format!("{name}: claims outside a chapter"));
            continue;
        };
        let tests = chapter_tests(nn);
        for c in claims {
            n += 1;
            if !tests.contains(&c) {
                problems.push(format!(
                    "{name}: claim `{c}` has no #[test] fn in tests/book/ch{nn}_*.rs"
                ));
            }
        }
    }
    assert!(
        n > 0,
        "the book makes no claims: the check would be vacuous"
    );
    assert_none("claims", problems);
}

#[test]
fn every_image_exists() {
    let mut problems = vec![];
    for f in chapter_files() {
        for img in book::image_links(&read(&f)) {
            if img.contains("://") {
                problems.push(format!("{}: remote image {img}", rel(&f)));
            } else if !f.parent().unwrap().join(&img).is_file() {
                problems.push(format!("{}: image {img} does not exist", rel(&f)));
            }
        }
    }
    assert_none("images", problems);
}

#[test]
fn generated_files_are_the_rendering_of_their_json() {
    // The same check as `dlbook regen all --check`.
    let problems = experiments::check_generated(&root(), "all").unwrap();
    assert_none(
        "generated results (run `dlbook regen all` to refresh)",
        problems,
    );
}

#[test]
fn notebooks_hold_no_outputs_and_start_from_the_library() {
    let dir = root().join("notebooks");
    let nbs = book::files_with_ext(&dir, ".ipynb").unwrap();
    assert!(!nbs.is_empty(), "no notebooks");
    let mut problems = vec![];
    for p in nbs {
        let name = rel(&p);
        let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
        let nb: serde_json::Value = match serde_json::from_str(&read(&p)) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{name}: not JSON: {e}"));
                continue;
            }
        };
        if nb["metadata"]["kernelspec"]["name"] != "rust" {
            problems.push(format!("{name}: kernel is not `rust` (evcxr)"));
        }
        // `chNN_slug.ipynb` goes with chapter NN's test modules `tests/book/chNN_*.rs`.
        let nn = stem
            .strip_prefix("ch")
            .and_then(|s| s.get(..2))
            .unwrap_or("");
        if nn.is_empty() || chapter_tests(nn).is_empty() {
            problems.push(format!("{name}: no tests/book/ch{nn}_*.rs for its chapter"));
        }
        let cells = nb["cells"].as_array().cloned().unwrap_or_default();
        let source = |c: &serde_json::Value| match &c["source"] {
            serde_json::Value::Array(a) => {
                a.iter().filter_map(|s| s.as_str()).collect::<String>()
            }
            v => v.as_str().unwrap_or("").to_string(),
        };
        // One header for every notebook: evcxr compiles the library into a crate with
        // the notebook's dependencies, and a notebook with another set of them makes it
        // rebuild the whole library (about two minutes) when it follows one without.
        let first_code = cells.iter().find(|c| c["cell_type"] == "code").map(source);
        if first_code.as_deref() != Some(NOTEBOOK_HEADER) {
            problems.push(format!(
                "{name}: the first code cell must be exactly\n{NOTEBOOK_HEADER}"
            ));
        }
        for (i, c) in cells.iter().enumerate() {
            let outputs = c["outputs"].as_array().map_or(0, |o| o.len());
            if outputs > 0 || !c["execution_count"].is_null() && c["cell_type"] == "code"
            {
                problems.push(format!("{name}: cell {i} has stored outputs"));
            }
        }
    }
    assert_none("notebooks", problems);
}

#[test]
fn no_machine_paths_in_the_book() {
    let mut files = chapter_files();
    files.extend(book::files_with_ext(&root().join("notebooks"), ".ipynb").unwrap());
    files.extend(book::files_with_ext(&root().join("chapters/generated"), "").unwrap());
    files.push(root().join("README.md"));
    let mut problems = vec![];
    for f in files {
        for p in book::machine_paths(&read(&f)) {
            problems.push(format!("{}: {p}", rel(&f)));
        }
    }
    assert_none("machine paths", problems);
}

#[test]
fn claim_markers_do_not_split_paragraphs() {
    // An HTML comment that starts a line interrupts a Markdown paragraph: whatever
    // follows it (on its line or the next) begins a new paragraph. A marker may start a
    // line only as the last line of its paragraph; elsewhere it goes at a line's end.
    let strip = |l: &str| l.trim_start_matches(['>', ' ']).to_string();
    let mut problems = vec![];
    for f in chapter_files() {
        let text = read(&f);
        let lines: Vec<String> = text.lines().map(strip).collect();
        for (i, t) in lines.iter().enumerate() {
            if !t.starts_with("<!-- claim:") {
                continue;
            }
            let after = t.split_once("-->").map_or("", |(_, a)| a).trim();
            let next = lines.get(i + 1).map_or("", |l| l.trim());
            let block_start = ["<!--", "* ", "- ", "+ ", "#", "|", "```", "$$", "!["];
            let numbered = next
                .split_once(". ")
                .is_some_and(|(n, _)| n.parse::<u32>().is_ok());
            let ends_paragraph = next.is_empty()
                || numbered
                || block_start.iter().any(|b| next.starts_with(b));
            if !(after.is_empty() || after.starts_with("<!--")) || !ends_paragraph {
                problems.push(format!(
                    "{}:{}: a claim marker splits a paragraph",
                    rel(&f),
                    i + 1
                ));
            }
        }
    }
    assert_none("claim markers", problems);
}
