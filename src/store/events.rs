//! What came back: events recorded by `gazette inbound` (bounces, complaints, unsubscribe
//! mail) with the issue they are about, the soft-bounce rule, and the counts `status` shows.

use super::*;

/// `gazette inbound`'s queries: events with their issue, the soft-bounce rule.
impl Store {
    /// A subscriber's address by id.
    pub fn subscriber_email(&self, id: i64) -> anyhow::Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT email FROM subscribers WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// The ids of every issue that was sent.
    pub fn sent_issue_ids(&self) -> anyhow::Result<Vec<String>> {
        let mut stmt = self.conn.prepare("SELECT issue_id FROM sent_issues")?;
        let ids = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(ids)
    }

    /// Records an inbound event about `issue_id` (where known) for a known subscriber;
    /// false if unknown or already recorded (same subscriber, kind and source message).
    pub fn record_issue_event(
        &self,
        address: &Address,
        kind: &str,
        status: Option<&str>,
        source: &str,
        issue_id: Option<&str>,
    ) -> anyhow::Result<bool> {
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO events (subscriber_id, kind, status, source, created_at, issue_id)
             SELECT id, ?2, ?3, ?4, ?5, ?6 FROM subscribers WHERE email_key = ?1",
            params![address.key, kind, status, source, timestamp(), issue_id],
        )?;
        Ok(n > 0)
    }

    /// The issue whose message to `address` had this Message-ID (without angle brackets).
    pub fn issue_of_message(
        &self,
        address: &Address,
        message_id: &str,
    ) -> anyhow::Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT d.issue_id FROM subscribers s
                 JOIN sent_issues si
                 JOIN deliveries d ON d.issue_id = si.issue_id AND d.subscriber_id = s.id
                 WHERE s.email_key = ?1 AND d.message_id = ?2 LIMIT 1",
                params![address.key, message_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The soft-bounce streak of a subscriber: walking the issues sent to them from the
    /// newest one with a temporary failure (`kind`) back, how many in a row failed. An issue
    /// sent to them in between with no failure recorded (or a success report) was delivered
    /// and ends the streak. Failures whose issue is unknown do not count.
    pub fn soft_bounce_streak(&self, address: &Address, kind: &str) -> anyhow::Result<u32> {
        let mut stmt = self.conn.prepare(
            "SELECT si.issue_id,
                    EXISTS (SELECT 1 FROM events e WHERE e.subscriber_id = s.id
                            AND e.kind = ?2 AND e.issue_id = si.issue_id),
                    EXISTS (SELECT 1 FROM events e WHERE e.subscriber_id = s.id
                            AND e.kind = 'delivery' AND e.issue_id = si.issue_id)
             FROM subscribers s
             JOIN sent_issues si
             JOIN deliveries d ON d.issue_id = si.issue_id AND d.subscriber_id = s.id
             WHERE s.email_key = ?1 AND d.state IN ('sent', 'unknown')
             ORDER BY si.first_sent DESC, si.issue_id DESC",
        )?;
        let rows = stmt
            .query_map(params![address.key, kind], |r| {
                Ok((r.get::<_, bool>(1)?, r.get::<_, bool>(2)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let streak = rows
            .iter()
            .skip_while(|(failed, _)| !failed)
            .take_while(|(failed, delivered)| *failed && !delivered)
            .count();
        Ok(streak as u32)
    }

    /// Per sent issue: hard bounces, temporary failures and complaints recorded by
    /// `inbound`, keyed by issue id.
    pub fn inbound_counts(
        &self,
    ) -> anyhow::Result<std::collections::HashMap<String, InboundCounts>> {
        let mut stmt = self.conn.prepare(
            "SELECT issue_id,
                    COUNT(DISTINCT CASE WHEN kind = 'bounce' THEN subscriber_id END),
                    COUNT(DISTINCT CASE WHEN kind = 'soft-bounce' THEN subscriber_id END),
                    COUNT(DISTINCT CASE WHEN kind = 'complaint' THEN subscriber_id END)
             FROM events WHERE issue_id IS NOT NULL GROUP BY issue_id",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    InboundCounts {
                        bounces: r.get::<_, i64>(1)? as u64,
                        soft_bounces: r.get::<_, i64>(2)? as u64,
                        complaints: r.get::<_, i64>(3)? as u64,
                    },
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }
}

/// What `inbound` recorded about one issue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct InboundCounts {
    pub bounces: u64,
    pub soft_bounces: u64,
    pub complaints: u64,
}
