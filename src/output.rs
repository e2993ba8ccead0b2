//! What a command prints, by one set of rules for every command:
//! - results a script reads (a list, a count, a report with `--json`) go to standard output;
//! - notes for the person at the terminal ("wrote …", a summary) go to standard error, and
//!   `--quiet` or `--json` silences them;
//! - diagnostics go to standard error, errors always, warnings unless `--quiet` or `--json`;
//! - a progress bar shows only on a terminal, and never with `--quiet` or `--json`.
//!
//! Writing to standard output returns its error, so a closed pipe (`gazette status | head -1`)
//! ends the command quietly instead of panicking.

use std::fmt::Display;
use std::io::{IsTerminal, Write};

use serde::Serialize;

use crate::diagnostic::Diagnostic;

/// `eprintln!` that never panics: a standard error nobody reads any more (`2>&1 | head -1`,
/// a closed terminal) loses the text and the command goes on with its work.
#[macro_export]
macro_rules! eline {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

/// `eprint!` that never panics (see [`eline!`]).
#[macro_export]
macro_rules! etext {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut err = std::io::stderr().lock();
        let _ = write!(err, $($arg)*);
        let _ = err.flush();
    }};
}

/// How loud a command is: from `--quiet` and `--json`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Output {
    pub quiet: bool,
    pub json: bool,
}

impl Output {
    /// One line of a result on standard output.
    pub fn line(&self, text: impl Display) -> std::io::Result<()> {
        writeln!(std::io::stdout().lock(), "{text}")
    }

    /// A value as one line of JSON on standard output.
    pub fn json_line(&self, value: &impl Serialize) -> anyhow::Result<()> {
        let text = serde_json::to_string(value)?;
        Ok(self.line(text)?)
    }

    /// A command's report: one line of JSON on standard output with `--json`, else its text on
    /// standard error unless `--quiet`.
    pub fn report(&self, report: &(impl Serialize + Display)) -> anyhow::Result<()> {
        if self.json {
            self.json_line(report)
        } else {
            self.note(report);
            Ok(())
        }
    }

    /// A note for the person at the terminal, on standard error; silent with `--quiet` or
    /// `--json`.
    pub fn note(&self, text: impl Display) {
        if !self.quiet && !self.json {
            crate::eline!("{text}");
        }
    }

    /// A warning on standard error that `--quiet` does not silence: something the operator
    /// must act on.
    pub fn warn(&self, text: impl Display) {
        crate::eline!("{text}");
    }

    /// Diagnostics on standard error, errors first and then warnings, each group in file
    /// order; warnings are left out with `--quiet` or `--json`. Returns how many are errors.
    pub fn diagnostics(&self, diagnostics: &mut [Diagnostic]) -> usize {
        diagnostics.sort_by(|a, b| {
            (a.severity, &a.path, a.line, a.column).cmp(&(b.severity, &b.path, b.line, b.column))
        });
        let quiet = self.quiet || self.json;
        for d in diagnostics.iter().filter(|d| d.is_error() || !quiet) {
            crate::eline!("{d}\n");
        }
        diagnostics.iter().filter(|d| d.is_error()).count()
    }

    /// Whether to draw a progress bar on standard error.
    pub fn progress(&self) -> bool {
        !self.quiet && !self.json && std::io::stderr().is_terminal()
    }
}

/// An error whose details were already printed (diagnostics, a per-row report); `main`
/// prints only its one-line summary, without an `error:` prefix of its own.
#[derive(Debug)]
pub struct Reported(pub String);

impl Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Reported {}

/// "1 error", "2 errors".
pub fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// A progress bar's rate as people read it: `41/s`, not indicatif's `41.1028/s`.
pub fn rounded_rate(state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write) {
    let _ = std::fmt::Write::write_fmt(w, format_args!("{:.0}/s", state.per_sec()));
}

/// Whether an error is standard output closed by its reader (`| head`): not a failure.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        let io = cause.downcast_ref::<std::io::Error>().or_else(|| {
            cause
                .downcast_ref::<csv::Error>()
                .and_then(|e| match e.kind() {
                    csv::ErrorKind::Io(io) => Some(io),
                    _ => None,
                })
        });
        io.is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
