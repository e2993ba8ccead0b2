//! The newsletter directory: where each part lives, named once. Everything that joins a
//! path under the newsletter goes through here; nothing here touches the disk.

use std::path::{Path, PathBuf};

/// The settings file at the top of a newsletter.
pub const CONFIG_FILE: &str = "gazette.toml";
/// One Markdown file per issue, and the files they link to.
pub const ISSUES_DIR: &str = "issues";
/// The editor's own stylesheets and footer, overriding the built-in ones.
pub const TEMPLATES_DIR: &str = "templates";
/// What `publish` writes and `serve` serves: pages, feeds and copied assets.
pub const FEEDS_DIR: &str = "feeds";
/// Rendered emails, one folder per issue: `outbox/<slug>/`. Git-ignored.
pub const OUTBOX_DIR: &str = "outbox";
/// gazette's own state: the database, the signing key, the run lock. Git-ignored.
pub const STATE_DIR: &str = ".gazette";

/// `issues/`.
pub fn issues(dir: &Path) -> PathBuf {
    dir.join(ISSUES_DIR)
}

/// `templates/<name>`.
pub fn template(dir: &Path, name: &str) -> PathBuf {
    dir.join(TEMPLATES_DIR).join(name)
}

/// `feeds/`.
pub fn feeds(dir: &Path) -> PathBuf {
    dir.join(FEEDS_DIR)
}

/// `outbox/<slug>/`.
pub fn outbox(dir: &Path, slug: &str) -> PathBuf {
    dir.join(OUTBOX_DIR).join(slug)
}

/// `outbox/`.
pub fn outboxes(dir: &Path) -> PathBuf {
    dir.join(OUTBOX_DIR)
}

/// `.gazette/<name>`: the database, the secret, the lock, publish's manifest.
pub fn state(dir: &Path, name: &str) -> PathBuf {
    dir.join(STATE_DIR).join(name)
}
