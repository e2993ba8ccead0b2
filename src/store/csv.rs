//! The subscriber list as files: a CSV of addresses -> checked rows with located problems
//! ([`parse_csv`], pure), and the list -> CSV ([`write_csv`]). Never opens the database.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::rc::Rc;

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

/// The bytes of a CSV being read, by offset: a stream from any offset (to start again after a
/// broken row), and a few bytes at an offset (a problem's source line). Nothing is kept.
pub trait Source {
    fn size(&self) -> u64;
    fn reader_from(&self, offset: u64) -> std::io::Result<Box<dyn Read + '_>>;
    fn bytes_at(&self, offset: u64, max: usize) -> std::io::Result<Vec<u8>>;
}

impl Source for [u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn reader_from(&self, offset: u64) -> std::io::Result<Box<dyn Read + '_>> {
        Ok(Box::new(&self[(offset as usize).min(self.len())..]))
    }
    fn bytes_at(&self, offset: u64, max: usize) -> std::io::Result<Vec<u8>> {
        let from = (offset as usize).min(self.len());
        Ok(self[from..(from + max).min(self.len())].to_vec())
    }
}

impl Source for std::fs::File {
    fn size(&self) -> u64 {
        self.metadata().map_or(0, |m| m.len())
    }
    fn reader_from(&self, offset: u64) -> std::io::Result<Box<dyn Read + '_>> {
        let mut f = self.try_clone()?;
        f.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(f))
    }
    fn bytes_at(&self, offset: u64, max: usize) -> std::io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; max];
        let mut got = 0;
        while got < max {
            match self.read_at(&mut buf[got..], offset + got as u64)? {
                0 => break,
                n => got += n,
            }
        }
        buf.truncate(got);
        Ok(buf)
    }
}

/// Where the line breaks are in what the CSV reader has read, for the lines it may still ask
/// about: offsets before the current row are forgotten, so memory stays flat.
#[derive(Default)]
struct Breaks {
    /// Line feeds before `kept[0]`.
    forgotten: usize,
    /// Offsets of `\n` and `\r`, with whether each is a `\n`.
    kept: VecDeque<(u64, bool)>,
}

impl Breaks {
    /// The 1-based line of a row starting at `offset` (which may point at the line ending
    /// before the row, as the csv crate reports after CRLF).
    fn line_of(&self, mut offset: u64) -> usize {
        let mut i = self.kept.partition_point(|&(o, _)| o < offset);
        while self.kept.get(i).is_some_and(|&(o, _)| o == offset) {
            offset += 1;
            i += 1;
        }
        self.forgotten + self.kept.range(..i).filter(|(_, lf)| *lf).count() + 1
    }

    /// The offset where line `line` (1-based) starts, if it is still known.
    fn start_of(&self, line: usize) -> Option<u64> {
        if line <= self.forgotten + 1 {
            return None;
        }
        let nth = line - 2 - self.forgotten;
        self.kept
            .iter()
            .filter(|(_, lf)| *lf)
            .nth(nth)
            .map(|&(o, _)| o + 1)
    }

    /// Forgets the breaks before `offset` (rows there are done).
    fn forget_before(&mut self, offset: u64) {
        while let Some(&(o, lf)) = self.kept.front() {
            if o >= offset {
                break;
            }
            self.kept.pop_front();
            if lf {
                self.forgotten += 1;
            }
        }
    }

    /// Forgets the breaks read ahead from `offset` on: reading starts again there.
    fn rewind_to(&mut self, offset: u64) {
        while self.kept.back().is_some_and(|&(o, _)| o >= offset) {
            self.kept.pop_back();
        }
    }
}

/// A reader that notes the line breaks it passes on.
struct Counting<R> {
    inner: R,
    offset: u64,
    breaks: Rc<RefCell<Breaks>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut breaks = self.breaks.borrow_mut();
        for (i, b) in buf[..n].iter().enumerate() {
            if matches!(b, b'\n' | b'\r') {
                breaks.kept.push_back((self.offset + i as u64, *b == b'\n'));
            }
        }
        self.offset += n as u64;
        Ok(n)
    }
}

/// The longest part of a line shown under a problem.
const SHOWN_LINE: usize = 300;

fn located(
    path: &Path,
    source: &(impl Source + ?Sized),
    line: usize,
    start: u64,
    message: String,
) -> Diagnostic {
    let mut d = Diagnostic::error(path, message);
    d.line = line;
    d.column = 1;
    d.source_line = source.bytes_at(start, SHOWN_LINE).ok().map(|bytes| {
        let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
        String::from_utf8_lossy(line)
            .trim_end_matches('\r')
            .to_string()
    });
    d
}

/// What to do with each row of a CSV as it is read.
pub trait Rows {
    /// A valid row. Returns the line of an earlier row with the same address, if any (the
    /// row is then reported and not taken).
    fn row(&mut self, row: Row) -> anyhow::Result<Option<usize>>;
    /// A row that is not valid, or a problem with the file.
    fn problem(&mut self, problem: Diagnostic);
}

/// Reads a subscriber CSV held in memory (see [`read_csv`]), keeping every row.
pub fn parse_csv(path: &Path, data: &[u8]) -> Parsed {
    struct Collect {
        out: Parsed,
        seen: HashMap<String, usize>,
    }
    impl Rows for Collect {
        fn row(&mut self, row: Row) -> anyhow::Result<Option<usize>> {
            if let Some(first) = self.seen.get(&row.address.key) {
                return Ok(Some(*first));
            }
            self.seen.insert(row.address.key.clone(), row.line);
            self.out.rows.push(row);
            Ok(None)
        }
        fn problem(&mut self, problem: Diagnostic) {
            self.out.problems.push(problem);
        }
    }
    let mut collect = Collect {
        out: Parsed::default(),
        seen: HashMap::new(),
    };
    read_csv(path, data, &mut collect).expect("reading memory into a list cannot fail");
    collect.out
}

/// Reads a subscriber CSV as a stream: a header row naming an `email` column (required) and
/// a `name` column (optional); a byte-order mark, CRLF and quoted fields are fine. Rows that
/// are not valid (bad address, not UTF-8, a line break inside a field, a duplicate) are
/// reported by line and left out; each other row goes to `rows` as it is read. Memory does
/// not grow with the file. Returns false when the header row is refused (the file is empty,
/// or has no or two `email` columns): then no row was read.
pub fn read_csv(
    path: &Path,
    source: &(impl Source + ?Sized),
    rows: &mut impl Rows,
) -> anyhow::Result<bool> {
    let len = source.size();
    let bom = source.bytes_at(0, 3)? == b"\xEF\xBB\xBF";
    let header_start: u64 = if bom { 3 } else { 0 };
    let breaks = Rc::new(RefCell::new(Breaks::default()));
    let reader_at = |offset: u64| -> std::io::Result<_> {
        breaks.borrow_mut().rewind_to(offset);
        Ok(csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(64 * 1024)
            .from_reader(Counting {
                inner: source.reader_from(offset)?,
                offset,
                breaks: breaks.clone(),
            }))
    };

    // The header is the first line.
    let mut reader = reader_at(header_start)?;
    let mut header = csv::ByteRecord::new();
    match reader.read_byte_record(&mut header) {
        Ok(false) => {
            rows.problem(
                Diagnostic::error(path, "the file is empty")
                    .with_hint("the first line must name the columns, e.g. `email,name`"),
            );
            return Ok(false);
        }
        Err(e) => {
            rows.problem(located(
                path,
                source,
                1,
                header_start,
                format!("cannot read the header row: {e}"),
            ));
            return Ok(false);
        }
        Ok(true) => {}
    }
    drop(reader);
    let columns: Vec<String> = header
        .iter()
        .map(|f| String::from_utf8_lossy(f).trim().to_lowercase())
        .collect();
    let Some(email_col) = columns.iter().position(|c| c == "email") else {
        // A header of one 3 MB "column" is shown by its start.
        let mut found = columns
            .iter()
            .take(8)
            .map(|c| format!("`{}`", crate::text::cut(c, 40)))
            .collect::<Vec<_>>()
            .join(", ");
        if columns.len() > 8 {
            found.push_str(&format!(" and {} more", columns.len() - 8));
        }
        rows.problem(
            located(
                path,
                source,
                1,
                header_start,
                "the header row has no `email` column".into(),
            )
            .with_hint(format!(
                "the first line must name the columns, e.g. `email,name`; found {found}"
            )),
        );
        return Ok(false);
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
            rows.problem(
                located(
                    path,
                    source,
                    1,
                    header_start,
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
            return Ok(false);
        }
    }
    let name_col = columns.iter().position(|c| c == "name");

    // Rows start on line 2.
    let Some(mut start) = breaks.borrow().start_of(2) else {
        return Ok(true);
    };
    let again_from = |line: usize| breaks.borrow().start_of(line);
    'restart: while start < len {
        let mut reader = reader_at(start)?;
        let mut record = csv::ByteRecord::new();
        loop {
            let result = reader.read_byte_record(&mut record);
            let record_start = record.position().map_or(start, |p| start + p.byte());
            let at = breaks.borrow().line_of(record_start);
            let at_offset = breaks.borrow().start_of(at).unwrap_or(record_start);
            let report = |rows: &mut dyn FnMut(Diagnostic), message: String, hint: Option<&str>| {
                let mut d = located(path, source, at, at_offset, message);
                if let Some(hint) = hint {
                    d = d.with_hint(hint);
                }
                rows(d);
            };
            let mut problem = |d: Diagnostic| rows.problem(d);
            match result {
                Ok(false) => break 'restart,
                Ok(true) => {}
                Err(e) => {
                    let at = e
                        .position()
                        .map_or(at, |p| breaks.borrow().line_of(start + p.byte()));
                    problem(located(
                        path,
                        source,
                        at,
                        at_offset,
                        format!("cannot read this row: {e}"),
                    ));
                    match again_from(at + 1) {
                        Some(offset) => {
                            start = offset;
                            continue 'restart;
                        }
                        None => break 'restart,
                    }
                }
            }
            if record
                .iter()
                .any(|f| f.contains(&b'\n') || f.contains(&b'\r'))
            {
                let end = start + reader.position().byte();
                let end_line = breaks.borrow().line_of(end.saturating_sub(1)).max(at);
                if end >= len && odd_quotes(source, record_start, len)? {
                    // A quote never closed swallowed the rest of the file: read on from the
                    // next line instead.
                    report(
                        &mut problem,
                        "a quote opened on this line is never closed".into(),
                        Some(
                            "close the quote; the lines after this one were read as rows of their own",
                        ),
                    );
                    match again_from(at + 1) {
                        Some(offset) => {
                            start = offset;
                            continue 'restart;
                        }
                        None => break 'restart,
                    }
                }
                report(
                    &mut problem,
                    format!("a quoted field holds a line break (lines {at}-{end_line})"),
                    Some("put the row on one line; the row was not imported"),
                );
                continue;
            }
            breaks.borrow_mut().forget_before(record_start);
            if record.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)) {
                continue; // a blank line
            }
            let field = |i: usize| record.get(i).map(std::str::from_utf8);
            let email = match field(email_col) {
                None => {
                    report(
                        &mut problem,
                        format!(
                            "the row has {} field(s); the email is in column {}",
                            record.len(),
                            email_col + 1
                        ),
                        None,
                    );
                    continue;
                }
                Some(Err(_)) => {
                    report(
                        &mut problem,
                        "the email address is not UTF-8".into(),
                        Some("save the file as UTF-8"),
                    );
                    continue;
                }
                Some(Ok(e)) => from_cell(e),
            };
            let name = match name_col.and_then(field) {
                None => None,
                Some(Ok(n)) => Some(from_cell(n.trim()).to_string()).filter(|n| !n.is_empty()),
                Some(Err(_)) => {
                    report(
                        &mut problem,
                        "the name is not UTF-8".into(),
                        Some("save the file as UTF-8, e.g. `iconv -f GB18030 -t UTF-8`"),
                    );
                    continue;
                }
            };
            if name
                .as_deref()
                .is_some_and(|n| n.chars().any(char::is_control))
            {
                report(
                    &mut problem,
                    "the name contains a control character".into(),
                    None,
                );
                continue;
            }
            let address = match Address::parse(email) {
                Ok(a) => a,
                Err(message) => {
                    report(&mut problem, message, None);
                    continue;
                }
            };
            let shown = address.email.clone();
            let repeats = rows.row(Row {
                line: at,
                address,
                name,
            })?;
            if let Some(first) = repeats {
                let mut d = located(
                    path,
                    source,
                    at,
                    at_offset,
                    format!("`{shown}` repeats line {first} (addresses ignore case)"),
                );
                d = d.with_hint("only the first is imported");
                rows.problem(d);
            }
        }
    }
    Ok(true)
}

/// Whether the bytes from `from` to `to` hold an odd number of quotes (one never closed).
fn odd_quotes(source: &(impl Source + ?Sized), from: u64, to: u64) -> std::io::Result<bool> {
    let mut reader = source.reader_from(from)?.take(to - from);
    let mut quotes = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        quotes += buf[..n].iter().filter(|&&b| b == b'"').count() as u64;
    }
    Ok(quotes % 2 == 1)
}

/// Writes the list as CSV: `email,name,status,created_at,updated_at,reason,status_at` (the
/// last two: why and since when a subscriber is suppressed; empty while active).
pub fn write_csv(
    out: impl Write,
    each: impl FnOnce(&mut dyn FnMut(&Subscriber) -> anyhow::Result<()>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record([
        "email",
        "name",
        "status",
        "created_at",
        "updated_at",
        "reason",
        "status_at",
    ])?;
    each(&mut |s: &Subscriber| {
        w.write_record([
            &*to_cell(&s.email),
            &*to_cell(s.name.as_deref().unwrap_or("")),
            s.status.as_str(),
            &s.created_at,
            &s.updated_at,
            s.reason.as_deref().unwrap_or(""),
            s.status_at.as_deref().unwrap_or(""),
        ])?;
        Ok(())
    })?;
    w.flush()?;
    Ok(())
}

/// Whether a spreadsheet would read `value` as a formula (`=HYPERLINK(...)`, `+1`, `@SUM`),
/// behind any number of the quotes [`to_cell`] adds.
fn formula_like(value: &str) -> bool {
    value
        .trim_start_matches('\'')
        .starts_with(['=', '+', '-', '@', '\t', '\r'])
}

/// A value as exported: one that a spreadsheet would run as a formula is written behind a
/// `'` (OWASP's advice on CSV injection). A name comes from anyone who signs up, and the
/// export is opened in Excel or LibreOffice.
fn to_cell(value: &str) -> Cow<'_, str> {
    if formula_like(value) {
        format!("'{value}").into()
    } else {
        value.into()
    }
}

/// A value as imported: the `'` that [`to_cell`] added is taken off again, so an export
/// imports as it was.
fn from_cell(value: &str) -> &str {
    match value.strip_prefix('\'') {
        Some(rest) if formula_like(rest) => rest,
        _ => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_exported_behind_a_quote_and_imported_as_they_were() {
        for value in [
            "=HYPERLINK(\"http://evil.example\",\"x\")",
            "+1",
            "-2",
            "@SUM(A1)",
            "'=already quoted",
            "''-twice",
        ] {
            let cell = to_cell(value);
            assert!(cell.starts_with('\''), "{value} -> {cell}");
            assert_eq!(from_cell(&cell), value);
        }
        for value in ["Ann", "李雷", "o'brien", "'quoted'", "a=b", ""] {
            assert_eq!(to_cell(value), value);
            assert_eq!(from_cell(value), value);
        }
    }

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
    fn lines_stay_exact_across_read_buffers_and_restarts() {
        // 200,000 CRLF rows (several 64 KiB buffers), a broken quote in the middle, bad rows
        // after it: every problem names its own line and shows that line.
        let mut csv = b"email,name\r\n".to_vec();
        for i in 2..=200_000 {
            let row = match i {
                70_001 => "x@example.org,\"open quote\r\n".to_string(),
                150_000 | 199_999 => format!("not-an-address-{i},N\r\n"),
                _ => format!("r{i}@example.org,N{i}\r\n"),
            };
            csv.extend_from_slice(row.as_bytes());
        }
        let p = parse(&csv);
        let lines: Vec<usize> = p.problems.iter().map(|d| d.line).collect();
        assert_eq!(lines, [70_001, 150_000, 199_999], "{:?}", p.problems);
        assert_eq!(
            p.problems[1].source_line.as_deref(),
            Some("not-an-address-150000,N")
        );
        assert_eq!(p.rows.len(), 200_000 - 1 - 3);
        assert_eq!(p.rows.last().unwrap().line, 200_000);
        assert_eq!(p.rows[69_999].line, 70_002);
    }

    #[test]
    fn duplicates_differing_in_case_point_at_the_first() {
        let p = parse(b"email\nA@example.org\na@EXAMPLE.org\n");
        assert_eq!(p.rows.len(), 1);
        assert!(p.problems[0].message.contains("repeats line 2"));
        assert_eq!(p.problems[0].line, 3);
    }
}
