//! The built-in templates, compiled in: used when a newsletter has no `templates/<name>` of
//! its own, and written out by `gazette init` for the editor to change.

/// The web pages' stylesheet.
pub const SITE_CSS: &str = include_str!("../../templates/site.css");
/// The email's stylesheet, inlined into every message.
pub const EMAIL_CSS: &str = include_str!("../../templates/email.css");
/// The email footer in English (other languages: [`crate::render::i18n`]).
pub const FOOTER_MD: &str = include_str!("../../templates/footer.md");
