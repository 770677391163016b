//! The check that keeps the layering of `lib.rs`: a top-level module uses only the modules of
//! the layers below its own. It reads every file of `src/`, finds each `crate::<module>` path
//! outside comments (`use` lines, `use crate::{a, b::c}` groups over several lines, paths in
//! code) and fails naming each `file:line` that reaches a module of its own layer or above.
//!
//! Run it with `cargo test -p flowgate --lib layers`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The layers, lowest first. A module may use those of the layers before its own, never one of
/// its own layer or after it. A new top-level module must be placed here.
const LAYERS: &[&[&str]] = &[
    // Leaves: the generated WIT bindings and the size/duration parsers.
    &["units", "wit"],
    // Events and batches (the WIT types), the NDJSON format, record limits.
    &["event"],
    // The event log.
    &["log"],
    // Keyed state and windows.
    &["state"],
    // The wasmtime embedding; plugins in other languages made into components.
    &["runtime", "build"],
    // The pipeline file and its checks.
    &["config"],
    // What every step shares: Ctl, Stopped, counters, Cursor, Producer.
    &["flow"],
    // Plugin slots, deploy, probation.
    &["reload"],
    // Sources and sinks; the stage worker.
    &["connect", "stage"],
    // Running (the scheduler) and the pure plan of an edit.
    &["pipeline"],
    // The HTTP server (ingest, metrics, admin) and the file watcher.
    &["server", "watch"],
    // The command line.
    &["cli"],
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The layer of each module.
fn ranks() -> BTreeMap<&'static str, usize> {
    LAYERS
        .iter()
        .enumerate()
        .flat_map(|(i, l)| l.iter().map(move |m| (*m, i)))
        .collect()
}

/// Every `.rs` file under `dir`.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`None` for `lib.rs`, `main.rs` and this
/// file).
fn module_of(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(src()).expect("under src/");
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
    (!matches!(name.as_str(), "lib" | "main" | "layers")).then_some(name)
}

/// The text with comments blanked out (line comments, doc comments, block comments), lines
/// kept, so that a module named in prose is not an import.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let (mut in_str, mut block) = (false, 0usize);
    while let Some(c) = chars.next() {
        if block > 0 {
            if c == '*' && chars.peek() == Some(&'/') {
                chars.next();
                block -= 1;
            } else if c == '/' && chars.peek() == Some(&'*') {
                chars.next();
                block += 1;
            }
            out.push(if c == '\n' { '\n' } else { ' ' });
            continue;
        }
        if in_str {
            if c == '\\' {
                out.push(c);
                if let Some(n) = chars.next() {
                    out.push(n);
                }
                continue;
            }
            if c == '"' {
                in_str = false;
            }
            out.push(c);
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                out.push(c);
            }
            '\'' => {
                // A char literal ('"', '\''), or a lifetime: copied as it is.
                out.push(c);
                let rest: String = chars.clone().take(3).collect();
                if rest.starts_with('\\') {
                    for _ in 0..2 {
                        if let Some(n) = chars.next() {
                            out.push(n);
                        }
                    }
                } else if rest.chars().nth(1) == Some('\'')
                    && let Some(n) = chars.next()
                {
                    out.push(n);
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                block = 1;
            }
            _ => out.push(c),
        }
    }
    out
}

/// Each module a file names as `crate::<module>`, with its 1-based line.
fn uses(text: &str) -> Vec<(usize, String)> {
    let code = code_only(text);
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        // `flowgate::crate::` is not a thing; `$crate::` (macros) is not this crate's module.
        if code[..at].ends_with('$') || code[..at].ends_with(|c: char| c.is_alphanumeric()) {
            continue;
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a, b::c, d::{e, f}}`: the first segment of each path at depth 0.
            let (mut depth, mut start, mut offset) = (0usize, true, at + "crate::{".len());
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && (c.is_alphanumeric() || c == '_') => {
                        out.push((line_of(offset), ident(&code[offset..])));
                        start = false;
                    }
                    c if c.is_whitespace() => {}
                    _ => start = false,
                }
                offset += c.len_utf8();
            }
        } else {
            out.push((line_of(at), ident(rest)));
        }
    }
    out
}

/// Every use of a module of the same layer or one above, as `file:line: a uses b`.
fn violations() -> Vec<String> {
    let ranks = ranks();
    let mut all = Vec::new();
    files(&src(), &mut all);
    all.sort();
    let mut found = Vec::new();
    for path in all {
        let Some(module) = module_of(&path) else {
            continue;
        };
        let Some(&rank) = ranks.get(module.as_str()) else {
            found.push(format!(
                "{}: module `{module}` is in no layer: add it to LAYERS in src/layers.rs",
                path.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(&path).expect("a source file is readable");
        for (line, used) in uses(&text) {
            if used == module || used == "self" || used == "super" {
                continue;
            }
            match ranks.get(used.as_str()) {
                Some(&r) if r < rank => {}
                Some(_) => found.push(format!(
                    "{}:{line}: `{module}` uses `{used}`, which is not below it (layers, lowest first: {})",
                    path.display(),
                    LAYERS
                        .iter()
                        .map(|l| l.join(", "))
                        .collect::<Vec<_>>()
                        .join(" → ")
                )),
                None => {}
            }
        }
    }
    found
}

#[test]
fn modules_use_only_the_layers_below() {
    let found = violations();
    assert!(
        found.is_empty(),
        "imports against the layering ({}):\n{}",
        found.len(),
        found.join("\n")
    );
}

#[test]
fn every_module_of_lib_rs_is_in_a_layer() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("lib.rs");
    let ranks = ranks();
    let declared: Vec<String> = lib
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l
                .strip_prefix("pub(crate) mod ")
                .or_else(|| l.strip_prefix("pub mod "))
                .or_else(|| l.strip_prefix("mod "))?;
            Some(l.trim_end_matches(';').to_owned())
        })
        .filter(|m| m != "layers")
        .collect();
    assert!(!declared.is_empty());
    for m in &declared {
        assert!(
            ranks.contains_key(m.as_str()),
            "module `{m}` of lib.rs is in no layer"
        );
    }
    for m in ranks.keys() {
        assert!(
            declared.iter().any(|d| d == m),
            "LAYERS names `{m}`, which lib.rs does not declare"
        );
    }
}

#[test]
fn the_scanner_finds_uses_and_skips_comments() {
    let text = "use crate::log::EventLog;\n// crate::cli in a comment\n/// [`crate::server`]\nuse crate::{\n    event::{self, Batch},\n    state,\n};\nlet s = \"crate::cli\"; let x = crate::flow::total_syncs(l);\n";
    let got: Vec<(usize, String)> = uses(text);
    let got: Vec<(usize, &str)> = got.iter().map(|(l, m)| (*l, m.as_str())).collect();
    // The string literal is code text the scanner cannot tell from a path: it is counted, which
    // errs on the side of failing.
    assert_eq!(
        got,
        [
            (1, "log"),
            (5, "event"),
            (6, "state"),
            (8, "cli"),
            (8, "flow")
        ]
    );
}
