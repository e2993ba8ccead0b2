//! Rendering: pure functions from an issue and the settings to bytes. Markdown to HTML and to
//! plain text, the three feeds, the web pages and the email. Nothing here reads files, the
//! clock or the environment; the commands hand in what was loaded.

pub mod email;
pub mod feed;
pub mod i18n;
pub mod markdown;
pub mod site;
