//! The one clock: the system's, or `GAZETTE_NOW` when set (tests, and rehearsing a scheduled
//! issue). Everything that stamps or compares a time asks here, so a run has one idea of now.

use anyhow::Context;
use chrono::{DateTime, FixedOffset};

/// The environment variable that stands in for the clock (RFC 3339).
pub const NOW_ENV: &str = "GAZETTE_NOW";

/// Now, or `GAZETTE_NOW` when set.
pub fn now() -> anyhow::Result<DateTime<FixedOffset>> {
    match std::env::var(NOW_ENV) {
        Ok(v) => DateTime::parse_from_rfc3339(&v)
            .with_context(|| format!("{NOW_ENV}={v} is not an RFC 3339 date-time")),
        Err(_) => Ok(chrono::Utc::now().fixed_offset()),
    }
}
