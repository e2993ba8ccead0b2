//! Located problems in user input: `path:line:col: message`, the source line, a caret and a
//! hint. Owns the rendering of a problem; never decides whether a problem is one.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use unicode_width::UnicodeWidthStr;

/// How bad a problem is: errors fail `check` and stop `publish`; warnings do neither.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in one file, with its place when the place is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub path: PathBuf,
    /// 1-based line and column (column counted in characters); 0 when unknown.
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// The text of the offending line, shown under the message with a caret.
    pub source_line: Option<String>,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn error(path: &Path, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            path: path.to_path_buf(),
            line: 0,
            column: 0,
            message: message.into(),
            source_line: None,
            hint: None,
        }
    }

    pub fn warning(path: &Path, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(path, message)
        }
    }

    /// Places the problem at a byte offset of `source`, the whole file's text.
    pub fn at_offset(self, source: &str, offset: usize) -> Self {
        let (line, column) = line_column(source, offset);
        self.at(source, line, column)
    }

    /// Places the problem at a 1-based line and column of `source`, the whole file's text.
    pub fn at(mut self, source: &str, line: usize, column: usize) -> Self {
        self.line = line;
        self.column = column;
        self.source_line = source
            .split('\n')
            .nth(line.saturating_sub(1))
            .map(|l| l.trim_end_matches('\r'))
            .and_then(|l| {
                // A line too long to read is not quoted whole: cut after the column, or left
                // out when the column is far in.
                const SHOWN: usize = 160;
                if l.chars().count() <= SHOWN {
                    Some(l.to_string())
                } else if column <= SHOWN {
                    Some(l.chars().take(SHOWN).chain(std::iter::once('…')).collect())
                } else {
                    None
                }
            });
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// 1-based line and character column of a byte offset (clamped to the text, and to a char
/// boundary).
pub fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = source[line_start..offset].chars().count() + 1;
    (line, column)
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}", shown_path(&self.path).display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column.max(1))?;
        }
        write!(f, ": {kind}: {}", self.message)?;
        if let Some(source) = &self.source_line {
            let gutter = self.line.to_string().len();
            let shown: String = source
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            let prefix: String = shown.chars().take(self.column.saturating_sub(1)).collect();
            let pad = UnicodeWidthStr::width(prefix.as_str());
            write!(f, "\n{:gutter$} |", "")?;
            write!(f, "\n{} | {}", self.line, shown)?;
            write!(f, "\n{:gutter$} | {:pad$}^", "", "")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  = help: {hint}")?;
        }
        Ok(())
    }
}

/// A diagnostic is also an error, so a located problem met deep inside a command travels up
/// whole and `main` prints it once, as it is (no `error:` of its own in front).
impl std::error::Error for Diagnostic {}

/// A path as the user should read it: `-C .` (the default) would make every path start with
/// `./`, which the user never typed.
pub fn shown_path(path: &Path) -> &Path {
    path.strip_prefix(".").unwrap_or(path)
}

/// "did you mean `x`?" when one of `candidates` is close to `word`.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

/// A TOML error as a located diagnostic; `toml` is where the TOML text is in `source`.
/// Unknown keys get a "did you mean" hint from the list serde reports.
pub fn toml_error(
    path: &Path,
    source: &str,
    toml: Range<usize>,
    err: &toml::de::Error,
) -> Diagnostic {
    // After a syntax error the parser recovers and may report a later, derived error first
    // (`key with no value` on the line after an unclosed string): show the earliest one.
    let offset = toml.start;
    let text = source.get(toml).unwrap_or_default();
    let (_, mut syntax) = toml::de::DeTable::parse_recoverable(text);
    syntax.sort_by_key(|e| e.span().map_or(usize::MAX, |s| s.start));
    let err = syntax.first().unwrap_or(err);
    // serde's words for TOML types, in the words of the file.
    let message = err
        .message()
        .trim()
        .replace("expected a sequence", "expected a list")
        .replace("expected a TOML datetime", "expected a date")
        .replace("expected i64", "expected a whole number")
        .replace("expected f64", "expected a number")
        .replace(
            "expected struct RawPerson",
            "expected a person: { name = ..., email = ... }",
        )
        .replace(
            "cannot recurse further; max recursion depth met",
            "nested too deeply",
        );
    // The settings' own struct names (`RawEmail`) mean nothing to an editor.
    let message = match message.split_once("expected struct Raw") {
        Some((before, _)) => format!("{before}expected a table"),
        None => message,
    };
    let start = err.span().map_or(offset, |s| offset + s.start);
    let mut d = Diagnostic::error(path, message.clone()).at_offset(source, start);
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let names: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        let hint = did_you_mean(field, names.iter().copied()).unwrap_or_else(|| {
            format!(
                "remove `{field}`; the keys allowed here are {}",
                names.join(", ")
            )
        });
        d = d.with_hint(hint);
    } else if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        d = d.with_hint(format!(
            "add a line `{field} = ...` here; the README lists every key"
        ));
    } else if message.starts_with("invalid basic string")
        || message.starts_with("invalid literal string")
    {
        d = d.with_hint(
            "close the string with a quote on the same line; for several lines use \"\"\"...\"\"\"",
        );
    } else if message.ends_with("expected a person: { name = ..., email = ... }") {
        d = d.with_hint(
            "write e.g. author = { name = \"论文月刊编辑部\", email = \"editors@example.org\" }",
        );
    } else if message.ends_with("expected a table") {
        d = d.with_hint("write this key as a table, e.g. [section] with key = value lines under it; the README lists every key");
    } else if let Some(rest) = message.strip_prefix("invalid type: string \"") {
        let value = rest.rsplit_once("\", expected").map_or("", |(v, _)| v);
        if message.ends_with("expected a list") {
            d = d.with_hint(format!("write a list in brackets: [\"{value}\"]"));
        } else if message.ends_with("expected a date") {
            d = d.with_hint(format!(
                "write the date without quotes: {value}, or 2023-03-31T09:00:00+08:00"
            ));
        } else if message.ends_with("expected a boolean") {
            d = d.with_hint("write true or false, without quotes");
        } else if message.ends_with("expected a whole number") {
            d = d.with_hint(format!("write the number without quotes: {value}"));
        }
    } else if message == "duplicate key" {
        let line = source.get(start..).unwrap_or_default();
        let key = line.split(['=', '\n']).next().unwrap_or_default().trim();
        d = d.with_hint(format!(
            "`{key}` is set twice in this table: keep one of the two lines"
        ));
    } else if message == "nested too deeply" {
        d = d.with_hint("lists or tables here are nested hundreds of levels deep: flatten them");
    } else if message.starts_with("invalid date") || message.starts_with("invalid time") {
        d = d.with_hint("write a date that exists, e.g. 2023-03-31 or 2023-03-31T09:00:00+08:00");
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters_not_bytes() {
        let text = "一\n二三x";
        assert_eq!(line_column(text, 0), (1, 1));
        let x = text.find('x').unwrap();
        assert_eq!(line_column(text, x), (2, 3));
        // An offset inside a multi-byte character moves back to its start.
        assert_eq!(line_column(text, 1), (1, 1));
        assert_eq!(line_column(text, 1000), (2, 4));
    }

    #[test]
    fn caret_lines_up_under_wide_characters() {
        let text = "title = \"中文\" x";
        let d = Diagnostic::error(Path::new("a.md"), "bad").at(text, 1, 13);
        let shown = d.to_string();
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines[0], "a.md:1:13: error: bad");
        // "title = \"中文\" " is 12 chars but 14 columns wide.
        assert_eq!(lines[3], format!("  | {}^", " ".repeat(14)));
    }

    /// The diagnostic `toml_error` makes for `text` read as `T`.
    fn toml_diagnostic<T: serde::de::DeserializeOwned + std::fmt::Debug>(text: &str) -> String {
        let err = toml::from_str::<T>(text).unwrap_err();
        toml_error(Path::new("gazette.toml"), text, 0..text.len(), &err).to_string()
    }

    #[test]
    fn toml_errors_in_an_editors_words_with_a_hint() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct RawPerson {
            name: String,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Settings {
            title: Option<String>,
            author: Option<RawPerson>,
            x: Option<toml::Value>,
        }
        let shown = toml_diagnostic::<Settings>("title = \"a\"\ntitle = \"b\"\n");
        assert!(
            shown.starts_with("gazette.toml:2:1: error: duplicate key"),
            "{shown}"
        );
        assert!(shown.contains("`title` is set twice"), "{shown}");

        let shown = toml_diagnostic::<Settings>("author = \"me\"\n");
        assert!(!shown.contains("RawPerson"), "{shown}");
        assert!(shown.contains("expected a person"), "{shown}");
        assert!(shown.contains("author = { name = "), "{shown}");

        let deep = format!("x = {}{}\n", "[".repeat(300), "]".repeat(300));
        let shown = toml_diagnostic::<Settings>(&deep);
        assert!(shown.contains("error: nested too deeply"), "{shown}");
        assert!(shown.contains("flatten them"), "{shown}");
    }

    #[test]
    fn suggestions_only_for_close_words() {
        assert_eq!(
            did_you_mean("titel", ["title", "date"]).as_deref(),
            Some("did you mean `title`?")
        );
        assert_eq!(did_you_mean("zzz", ["title", "date"]), None);
    }

    // Regression: with the default `-C .` every path was shown as `./issues/x.md`.
    #[test]
    fn paths_under_the_current_directory_show_without_dot_slash() {
        let d = Diagnostic::error(Path::new("./issues/x.md"), "bad");
        assert_eq!(d.to_string(), "issues/x.md: error: bad");
    }
}
