//! Rendering: pure functions from an issue and the settings to bytes. Markdown to HTML and to
//! plain text, the three feeds, the web pages and the email. Nothing here reads files, the
//! clock or the environment; the commands hand in what was loaded.

pub mod builtin;
pub mod email;
pub mod feed;
pub mod i18n;
pub mod markdown;
pub mod site;
pub mod text;

use crate::issue::Issue;

/// Length of a summary derived from the first paragraph, in characters.
pub const SUMMARY_CHARS: usize = 200;

/// The summary shown in feeds, the archive and the email preheader.
pub fn summary(issue: &Issue) -> String {
    issue
        .summary
        .clone()
        .unwrap_or_else(|| markdown::first_paragraph_text(&issue.body, SUMMARY_CHARS))
}
