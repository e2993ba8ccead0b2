//! `gazette subscribers import|add|remove|list|export|count`: the list, kept in the SQLite
//! store. An import adds its valid rows in one transaction and reports every bad one,
//! located; no command re-activates a suppressed address unless told to.

use std::path::Path;

use anyhow::Context;

use crate::cli::Subscribers;
use crate::diagnostic::Diagnostic;
use crate::output::{Output, Reported};
use crate::store::{self, csv};
use crate::text::one_line;

pub fn run(dir: &Path, sub: Subscribers, out: &Output) -> anyhow::Result<()> {
    let mut db = store::Store::open(dir)?;
    let parse = |raw: &str| store::Address::parse(raw).map_err(|e| anyhow::anyhow!("{e}"));
    match sub {
        Subscribers::Import { file, reactivate } => import(&mut db, &file, reactivate, out),
        Subscribers::Add {
            email,
            name,
            reactivate,
        } => {
            // One line, as CSV import makes it: a tab or line break would garble `list`.
            let name = name.map(|n| one_line(&n)).filter(|n| !n.is_empty());
            let added = db.add(&parse(&email)?, name.as_deref(), reactivate)?;
            match added {
                store::Added::Suppressed(status) => Err(anyhow::anyhow!(
                    "{email} is {status}; add --reactivate only if they asked to be added again"
                )),
                store::Added::New => {
                    out.note(format_args!("added {email}"));
                    Ok(())
                }
                store::Added::AlreadyActive => {
                    out.note(format_args!("{email} was already subscribed"));
                    Ok(())
                }
                store::Added::Reactivated => {
                    out.note(format_args!("re-activated {email}"));
                    Ok(())
                }
            }
        }
        Subscribers::Remove { email } => {
            match db.set_status(&parse(&email)?, store::Status::Unsubscribed)? {
                None => anyhow::bail!("{email} is not on the list"),
                Some(_) => out.note(format_args!("{email} unsubscribed (kept as a suppression)")),
            }
            Ok(())
        }
        Subscribers::List => {
            let mut stdout = std::io::stdout().lock();
            db.for_each_subscriber(|s| {
                use std::io::Write;
                if out.json {
                    writeln!(stdout, "{}", serde_json::to_string(s)?)?;
                } else {
                    write!(
                        stdout,
                        "{}\t{}\t{}",
                        s.email,
                        s.status,
                        s.name.as_deref().unwrap_or("")
                    )?;
                    if let Some(at) = s.status_at.as_deref().filter(|_| {
                        use store::Status::*;
                        matches!(s.status, Unsubscribed | Bounced | Complained)
                    }) {
                        // Suppressed: why and since when.
                        write!(stdout, "\t{}\t{at}", s.reason.as_deref().unwrap_or("-"))?;
                    }
                    writeln!(stdout)?;
                }
                Ok(())
            })
        }
        Subscribers::Export { out } => {
            let writer: Box<dyn std::io::Write> = match &out {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("cannot write {}", path.display()))?,
                )),
                None => Box::new(std::io::stdout().lock()),
            };
            csv::write_csv(writer, |f| db.for_each_subscriber(f))
        }
        Subscribers::Count => {
            let n = db.count_active()?;
            if out.json {
                out.json_line(&serde_json::json!({ "active": n }))
            } else {
                Ok(out.line(n)?)
            }
        }
    }
}

/// `subscribers import`: the valid rows go in (one transaction), every bad row is reported.
fn import(
    db: &mut store::Store,
    file: &Path,
    reactivate: bool,
    out: &Output,
) -> anyhow::Result<()> {
    let quiet = out.quiet || out.json;
    // A FIFO or device would block or never end: only regular files, opened after the check.
    let meta =
        std::fs::metadata(file).with_context(|| format!("cannot read {}", file.display()))?;
    if !meta.is_file() {
        anyhow::bail!(
            "{} is not a regular file (a FIFO, device or directory); save the list to a file and import that",
            file.display()
        );
    }
    if meta.len() > csv::MAX_CSV {
        anyhow::bail!("{} is larger than 1 GiB; split it", file.display());
    }
    let source =
        std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
    #[derive(Default, serde::Serialize)]
    struct Report {
        added: u64,
        already: u64,
        reactivated: u64,
        suppressed: u64,
        invalid: usize,
    }
    /// Rows go into the database as they are read; problems are printed as they are found.
    struct Import<'a> {
        db: &'a store::Store,
        file: &'a Path,
        reactivate: bool,
        quiet: bool,
        now: String,
        /// Ids above this were added by this import.
        added_after: i64,
        /// `(first id, its line)` where the lines of added rows stop following their ids
        /// one for one: the line of any added row, in memory that grows only with the
        /// file's irregular rows, not with its length.
        runs: Vec<(i64, usize)>,
        report: Report,
    }
    impl Import<'_> {
        fn line_of(&self, id: i64) -> usize {
            let i = self.runs.partition_point(|&(first, _)| first <= id) - 1;
            let (first, line) = self.runs[i];
            line + (id - first) as usize
        }
    }
    impl csv::Rows for Import<'_> {
        fn row(&mut self, row: csv::Row) -> anyhow::Result<Option<usize>> {
            let done = self.db.import_row(
                &row.address,
                row.name.as_deref(),
                self.reactivate,
                &self.now,
                self.added_after,
            )?;
            let added = match done {
                store::Imported::New(id) => {
                    let follows = self
                        .runs
                        .last()
                        .is_some_and(|&(first, line)| line + (id - first) as usize == row.line);
                    if !follows {
                        self.runs.push((id, row.line));
                    }
                    self.report.added += 1;
                    return Ok(None);
                }
                store::Imported::Repeat(id) => return Ok(Some(self.line_of(id))),
                store::Imported::Existing(added) => added,
            };
            match added {
                store::Added::New => self.report.added += 1,
                store::Added::AlreadyActive => self.report.already += 1,
                store::Added::Reactivated => self.report.reactivated += 1,
                store::Added::Suppressed(status) => {
                    self.report.suppressed += 1;
                    let mut d = Diagnostic::warning(
                        self.file,
                        format!("{} is {status}: not re-activated", row.address.email),
                    )
                    .with_hint("pass --reactivate only if they asked to be added again");
                    d.line = row.line;
                    d.column = 1;
                    if !self.quiet {
                        crate::eline!("{d}\n");
                    }
                }
            }
            Ok(None)
        }
        fn problem(&mut self, problem: Diagnostic) {
            if problem.is_error() {
                self.report.invalid += 1;
            }
            if problem.is_error() || !self.quiet {
                crate::eline!("{problem}\n");
            }
        }
    }
    // One transaction: an import that fails half-way adds nobody.
    db.tune_for_import()?;
    let r = db.transaction(|db| {
        let mut import = Import {
            db,
            file,
            reactivate,
            quiet,
            now: store::timestamp(),
            added_after: db.last_subscriber_id()?,
            runs: Vec::new(),
            report: Report::default(),
        };
        let read = csv::read_csv(file, &source, &mut import)?;
        Ok(read.then_some(import.report))
    })?;
    let Some(r) = r else {
        return Err(Reported(format!(
            "nothing was imported from {}: fix its header row (see above)",
            file.display()
        ))
        .into());
    };
    if out.json {
        out.json_line(&r)?;
    } else {
        out.note(format_args!(
            "imported {}: {} added, {} already subscribed, {} re-activated, {} left unsubscribed or bounced, {} row(s) with errors",
            file.display(),
            r.added,
            r.already,
            r.reactivated,
            r.suppressed,
            r.invalid
        ));
    }
    if r.invalid > 0 {
        return Err(Reported(format!(
            "{} row(s) of {} were not imported (see above); the other rows were",
            r.invalid,
            file.display()
        ))
        .into());
    }
    Ok(())
}
