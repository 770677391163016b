//! Spans and problems: where in the file each problem is, and the collector every check
//! reports to.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::IntoDeserializer;
use toml::Spanned;
use toml::de::DeValue;

/// One problem in a pipeline file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// What to write instead, when there is something to say.
    pub help: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n    help: {help}")?;
        }
        Ok(())
    }
}

/// Everything wrong with a pipeline file.
#[derive(Clone, Debug, thiserror::Error)]
pub struct Problems {
    /// The file.
    pub path: PathBuf,
    /// The problems, in file order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "{} has {n} problem{}:",
            self.path.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            writeln!(f, "{}:{p}", self.path.display())?;
        }
        Ok(())
    }
}

/// Byte offset → 1-based line and column.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before[before.rfind('\n').map_or(0, |i| i + 1)..]
        .chars()
        .count()
        + 1;
    (line, column)
}

/// The problems found so far, each with the byte offset it is at (they are reported in file
/// order).
pub(super) struct Collector<'t> {
    /// The whole file.
    pub text: &'t str,
    /// Offset and problem.
    pub problems: Vec<(usize, Problem)>,
}

impl<'t> Collector<'t> {
    /// A collector for `text`, with no problems yet.
    pub fn new(text: &'t str) -> Self {
        Collector {
            text,
            problems: Vec::new(),
        }
    }

    /// Reports a problem at `span`.
    pub fn add(&mut self, span: Range<usize>, message: impl Into<String>, help: Option<String>) {
        let (line, column) = line_col(self.text, span.start);
        self.problems.push((
            span.start,
            Problem {
                line,
                column,
                message: message.into(),
                help,
            },
        ));
    }

    /// Reports a TOML or serde error, at its span or else at `fallback`.
    pub fn serde(&mut self, fallback: Range<usize>, what: &str, e: toml::de::Error) {
        let span = e.span().unwrap_or(fallback);
        self.add(span, format!("{what}: {}", e.message().trim()), None);
    }

    /// `value` as a `T` (a serde shape of `keys`), or its error reported.
    pub fn section<'a, T: Deserialize<'a>>(
        &mut self,
        value: &Spanned<DeValue<'a>>,
        what: &str,
    ) -> Option<T> {
        match T::deserialize(value.clone().into_deserializer()) {
            Ok(t) => Some(t),
            Err(e) => {
                self.serde(value.span(), what, e);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_count_characters_and_lines_start_at_1() {
        let text = "a = 1\nb = \"é\" x\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        // `x` is byte 15 (é is two bytes) and character 9 of its line.
        assert_eq!(line_col(text, 15), (2, 9));
        assert_eq!(line_col(text, 1000), (3, 1));
    }

    #[test]
    fn problems_print_with_the_file_and_a_count() {
        let mut c = Collector::new("x = 1\ny = 2\n");
        c.add(6..7, "second", Some("do this".into()));
        c.add(0..1, "first", None);
        let p = Problems {
            path: "p.toml".into(),
            problems: c.problems.into_iter().map(|(_, p)| p).collect(),
        };
        assert_eq!(
            p.to_string(),
            "p.toml has 2 problems:\np.toml:2:1: second\n    help: do this\np.toml:1:1: first\n"
        );
    }
}
