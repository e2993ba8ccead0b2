//! The subscriber list as files: a CSV of addresses -> checked rows with located problems
//! ([`parse_csv`], pure), and the list -> CSV ([`write_csv`]). Never opens the database.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use crate::diagnostic::Diagnostic;
use crate::store::{Address, Subscriber};

/// Subscriber files larger than this are refused (about ten million rows).
pub const MAX_CSV: u64 = 1024 * 1024 * 1024;

/// One valid row of a subscriber CSV.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// 1-based line where the row starts.
    pub line: usize,
    pub address: Address,
    pub name: Option<String>,
}

/// What a CSV held: the valid rows, and a problem for each row that was not.
#[derive(Debug, Default)]
pub struct Parsed {
    pub rows: Vec<Row>,
    pub problems: Vec<Diagnostic>,
}

fn located(path: &Path, data: &[u8], line: usize, message: String) -> Diagnostic {
    let mut d = Diagnostic::error(path, message);
    d.line = line;
    d.column = 1;
    d.source_line = data
        .split(|&b| b == b'\n')
        .nth(line.saturating_sub(1))
        .map(|l| {
            String::from_utf8_lossy(l)
                .trim_end_matches('\r')
                .to_string()
        });
    d
}

/// Reads a subscriber CSV: a header row naming an `email` column (required) and a `name`
/// column (optional); a byte-order mark, CRLF and quoted fields are fine. Rows that are not
/// valid (bad address, not UTF-8, a line break inside a field, a duplicate) are reported by
/// line and left out; the others are returned.
pub fn parse_csv(path: &Path, data: &[u8]) -> Parsed {
    let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    let mut out = Parsed::default();
    // The header is the first line.
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(data);
    let header = match reader.byte_records().next() {
        None => {
            out.problems.push(
                Diagnostic::error(path, "the file is empty")
                    .with_hint("the first line must name the columns, e.g. `email,name`"),
            );
            return out;
        }
        Some(Err(e)) => {
            out.problems.push(located(
                path,
                data,
                1,
                format!("cannot read the header row: {e}"),
            ));
            return out;
        }
        Some(Ok(h)) => h,
    };
    let columns: Vec<String> = header
        .iter()
        .map(|f| String::from_utf8_lossy(f).trim().to_lowercase())
        .collect();
    let Some(email_col) = columns.iter().position(|c| c == "email") else {
        let found = columns
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ");
        out.problems.push(
            located(path, data, 1, "the header row has no `email` column".into()).with_hint(
                format!("the first line must name the columns, e.g. `email,name`; found {found}"),
            ),
        );
        return out;
    };
    for wanted in ["email", "name"] {
        let at: Vec<String> = columns
            .iter()
            .enumerate()
            .filter(|(_, c)| *c == wanted)
            .map(|(i, _)| (i + 1).to_string())
            .collect();
        if at.len() > 1 {
            // Which one holds the address is a guess gazette will not make.
            out.problems.push(
                located(
                    path,
                    data,
                    1,
                    format!(
                        "the header row has {} `{wanted}` columns (columns {})",
                        at.len(),
                        at.join(", ")
                    ),
                )
                .with_hint(format!(
                    "keep one `{wanted}` column, or rename the others (e.g. `{wanted}2`)"
                )),
            );
            return out;
        }
    }
    let name_col = columns.iter().position(|c| c == "name");

    // Lines are counted from byte offsets: the csv crate's own line count drifts on CRLF.
    let newlines: Vec<usize> = data
        .iter()
        .enumerate()
        .filter_map(|(i, b)| (*b == b'\n').then_some(i))
        .collect();
    // A record's position may point at the line ending before it (CRLF): skip those bytes.
    let line_of = |mut offset: usize| {
        while offset < data.len() && matches!(data[offset], b'\r' | b'\n') {
            offset += 1;
        }
        newlines.partition_point(|&i| i < offset) + 1
    };
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut line = 2; // where parsing (re)starts
    let line_start = |line: usize| {
        if line <= 1 {
            0
        } else {
            newlines.get(line - 2).map_or(data.len(), |i| i + 1)
        }
    };
    'restart: while line_start(line) < data.len() {
        let start = line_start(line);
        let base = line;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(&data[start..]);
        let mut record = csv::ByteRecord::new();
        loop {
            match reader.read_byte_record(&mut record) {
                Ok(false) => break 'restart,
                Ok(true) => {}
                Err(e) => {
                    let at = e
                        .position()
                        .map_or(base, |p| line_of(start + p.byte() as usize));
                    out.problems.push(located(
                        path,
                        data,
                        at,
                        format!("cannot read this row: {e}"),
                    ));
                    line = at + 1;
                    continue 'restart;
                }
            }
            let at = record
                .position()
                .map_or(base, |p| line_of(start + p.byte() as usize));
            if record
                .iter()
                .any(|f| f.contains(&b'\n') || f.contains(&b'\r'))
            {
                let record_start = start + record.position().map_or(0, |p| p.byte() as usize);
                let end = start + reader.position().byte() as usize;
                let quotes = data[record_start..].iter().filter(|&&b| b == b'"').count();
                if end >= data.len() && quotes % 2 == 1 {
                    // A quote never closed swallowed the rest of the file: read on from the
                    // next line instead.
                    out.problems.push(
                        located(path, data, at, "a quote opened on this line is never closed".into())
                            .with_hint("close the quote; the lines after this one were read as rows of their own"),
                    );
                    line = at + 1;
                    continue 'restart;
                }
                out.problems.push(
                    located(
                        path,
                        data,
                        at,
                        format!(
                            "a quoted field holds a line break (lines {at}-{})",
                            line_of(end.saturating_sub(1)).max(at)
                        ),
                    )
                    .with_hint("put the row on one line; the row was not imported"),
                );
                continue;
            }
            if record.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)) {
                continue; // a blank line
            }
            let field = |i: usize| record.get(i).map(std::str::from_utf8);
            let email = match field(email_col) {
                None => {
                    out.problems.push(located(
                        path,
                        data,
                        at,
                        format!(
                            "the row has {} field(s); the email is in column {}",
                            record.len(),
                            email_col + 1
                        ),
                    ));
                    continue;
                }
                Some(Err(_)) => {
                    out.problems.push(
                        located(path, data, at, "the email address is not UTF-8".into())
                            .with_hint("save the file as UTF-8"),
                    );
                    continue;
                }
                Some(Ok(e)) => e,
            };
            let name = match name_col.and_then(field) {
                None => None,
                Some(Ok(n)) => Some(n.trim().to_string()).filter(|n| !n.is_empty()),
                Some(Err(_)) => {
                    out.problems.push(
                        located(path, data, at, "the name is not UTF-8".into())
                            .with_hint("save the file as UTF-8, e.g. `iconv -f GB18030 -t UTF-8`"),
                    );
                    continue;
                }
            };
            if name
                .as_deref()
                .is_some_and(|n| n.chars().any(char::is_control))
            {
                out.problems.push(located(
                    path,
                    data,
                    at,
                    "the name contains a control character".into(),
                ));
                continue;
            }
            let address = match Address::parse(email) {
                Ok(a) => a,
                Err(message) => {
                    out.problems.push(located(path, data, at, message));
                    continue;
                }
            };
            if let Some(first) = seen.get(&address.key) {
                out.problems.push(
                    located(
                        path,
                        data,
                        at,
                        format!(
                            "`{}` repeats line {first} (addresses ignore case)",
                            address.email
                        ),
                    )
                    .with_hint("only the first is imported"),
                );
                continue;
            }
            seen.insert(address.key.clone(), at);
            out.rows.push(Row {
                line: at,
                address,
                name,
            });
        }
    }
    out
}

/// Writes the list as CSV: `email,name,status,created_at,updated_at`.
pub fn write_csv(
    out: impl Write,
    each: impl FnOnce(&mut dyn FnMut(&Subscriber) -> anyhow::Result<()>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(["email", "name", "status", "created_at", "updated_at"])?;
    each(&mut |s: &Subscriber| {
        w.write_record([
            s.email.as_str(),
            s.name.as_deref().unwrap_or(""),
            s.status.as_str(),
            &s.created_at,
            &s.updated_at,
        ])?;
        Ok(())
    })?;
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &[u8]) -> Parsed {
        parse_csv(Path::new("list.csv"), text)
    }

    #[test]
    fn bom_crlf_and_quotes() {
        let p = parse(b"\xEF\xBB\xBFName,Email\r\n\"Lee, Ann\",ann@example.org\r\nbob@x,\r\n");
        assert_eq!(p.rows.len(), 1);
        assert_eq!(p.rows[0].name.as_deref(), Some("Lee, Ann"));
        assert_eq!(p.rows[0].line, 2);
        assert_eq!(p.problems.len(), 1, "{:?}", p.problems);
        assert_eq!(p.problems[0].line, 3);
    }

    #[test]
    fn broken_quote_is_reported_and_later_rows_still_read() {
        let p = parse(b"email,name\na@example.org,\"Ann\nb@example.org,Bob\nc@example.org,C\n");
        let emails: Vec<&str> = p.rows.iter().map(|r| r.address.email.as_str()).collect();
        assert_eq!(emails, ["b@example.org", "c@example.org"]);
        assert_eq!(p.problems[0].line, 2);
    }

    #[test]
    fn duplicates_differing_in_case_point_at_the_first() {
        let p = parse(b"email\nA@example.org\na@EXAMPLE.org\n");
        assert_eq!(p.rows.len(), 1);
        assert!(p.problems[0].message.contains("repeats line 2"));
        assert_eq!(p.problems[0].line, 3);
    }
}
