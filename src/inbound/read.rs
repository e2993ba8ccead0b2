//! Where messages come from: standard input, a file with one message, an mbox, a Maildir.
//! A message over [`MAX_BYTES`] is not loaded; it is passed on without bytes (classified
//! as other).

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The largest message read whole.
pub const MAX_BYTES: u64 = 10 * 1024 * 1024;

/// One message and, for a Maildir, where it moves once processed.
pub struct Message {
    pub name: String,
    pub bytes: Option<Vec<u8>>,
    pub maildir_move: Option<(PathBuf, PathBuf)>,
}

impl Message {
    /// Marks the message processed (Maildir: new/ to cur/).
    pub fn done(&self) -> anyhow::Result<()> {
        if let Some((from, to)) = &self.maildir_move {
            std::fs::rename(from, to)
                .with_context(|| format!("cannot move {} to {}", from.display(), to.display()))?;
        }
        Ok(())
    }
}

type Handler<'a> = dyn FnMut(Message) -> anyhow::Result<()> + 'a;

pub fn stdin(f: &mut Handler<'_>) -> anyhow::Result<()> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .context("cannot read standard input")?;
    let bytes = (bytes.len() as u64 <= MAX_BYTES).then_some(bytes);
    f(Message {
        name: "-".into(),
        bytes,
        maildir_move: None,
    })
}

fn file(path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if len > MAX_BYTES {
        return Ok(None);
    }
    std::fs::read(path)
        .map(Some)
        .with_context(|| format!("cannot read {}", path.display()))
}

pub fn path(path: &Path, f: &mut Handler<'_>) -> anyhow::Result<()> {
    if path.is_dir() {
        let new = path.join("new");
        let cur = path.join("cur");
        if !new.is_dir() || !cur.is_dir() {
            anyhow::bail!(
                "{} is a directory but not a Maildir (no new/ and cur/)",
                path.display()
            );
        }
        let mut names: Vec<_> = std::fs::read_dir(&new)
            .with_context(|| format!("cannot list {}", new.display()))?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for name in names {
            let from = new.join(&name);
            let mut target = name.to_string_lossy().into_owned();
            if !target.contains(":2,") {
                target.push_str(":2,");
            }
            f(Message {
                name: from.display().to_string(),
                bytes: file(&from)?,
                maildir_move: Some((from.clone(), cur.join(target))),
            })?;
        }
        return Ok(());
    }
    let mut head = [0u8; 5];
    let n = std::fs::File::open(path)
        .and_then(|mut h| h.read(&mut head))
        .with_context(|| format!("cannot read {}", path.display()))?;
    if &head[..n] != b"From " {
        let bytes = file(path)?;
        return f(Message {
            name: path.display().to_string(),
            bytes,
            maildir_move: None,
        });
    }
    mbox(path, f)
}

/// An mbox (mboxrd): messages start at `From ` lines; `>From ` lines are unescaped.
fn mbox(path: &Path, f: &mut Handler<'_>) -> anyhow::Result<()> {
    let mut r = std::io::BufReader::new(
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?,
    );
    let mut line = Vec::new();
    let mut current: Option<(usize, Vec<u8>, bool)> = None;
    let mut n = 0usize;
    let mut prev_blank = true;
    let mut at_line_start = true;
    let emit = |cur: Option<(usize, Vec<u8>, bool)>, f: &mut Handler<'_>| -> anyhow::Result<()> {
        if let Some((i, bytes, over)) = cur {
            f(Message {
                name: format!("{}#{}", path.display(), i),
                bytes: (!over).then_some(bytes),
                maildir_move: None,
            })?;
        }
        Ok(())
    };
    loop {
        line.clear();
        // A line is read in pieces of at most 64 KiB, so one huge line never sits in memory.
        let got = (&mut r)
            .take(64 * 1024)
            .read_until(b'\n', &mut line)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if got == 0 {
            break;
        }
        let line_start = at_line_start;
        at_line_start = line.ends_with(b"\n");
        if line_start && prev_blank && line.starts_with(b"From ") {
            emit(current.take(), f)?;
            n += 1;
            current = Some((n, Vec::new(), false));
            prev_blank = false;
            continue;
        }
        prev_blank = line_start && (line == b"\n" || line == b"\r\n");
        if let Some((_, bytes, over)) = current.as_mut() {
            if *over {
                continue;
            }
            let body: &[u8] = if line_start
                && line.first() == Some(&b'>')
                && line
                    .iter()
                    .skip_while(|&&c| c == b'>')
                    .take(5)
                    .eq(b"From ".iter())
            {
                &line[1..]
            } else {
                &line
            };
            bytes.extend_from_slice(body);
            if bytes.len() as u64 > MAX_BYTES {
                *over = true;
                *bytes = Vec::new();
            }
        }
    }
    emit(current, f)
}

/// How many messages `path` holds (a Maildir's new/, an mbox's `From ` lines, 1 for a file),
/// for the progress bar; 0 when it cannot tell.
pub fn count(path: &Path) -> u64 {
    if path.is_dir() {
        return std::fs::read_dir(path.join("new")).map_or(0, |d| d.count() as u64);
    }
    let Ok(file) = std::fs::File::open(path) else {
        return 0;
    };
    let mut r = std::io::BufReader::with_capacity(64 * 1024, file);
    let (mut n, mut prev_blank, mut at_start) = (0u64, true, true);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut r).take(64 * 1024).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let start = at_start;
        at_start = line.ends_with(b"\n");
        if start && prev_blank && line.starts_with(b"From ") {
            n += 1;
        }
        prev_blank = start && (line == b"\n" || line == b"\r\n");
    }
    n.max(1)
}
