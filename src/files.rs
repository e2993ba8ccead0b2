//! Reading and writing files, each error naming its path. Text input is decoded here once:
//! UTF-8 checked with a located error, a byte-order mark dropped, CRLF turned into LF.

use std::fs;
use std::io;
use std::path::Path;

use anyhow::Context;

use crate::diagnostic::Diagnostic;

/// Files larger than this are refused rather than read: no issue or settings file is this big.
pub const MAX_TEXT_FILE: u64 = 16 * 1024 * 1024;

/// Reads a user-written text file; any problem becomes a diagnostic naming the file.
pub fn read_text(path: &Path) -> Result<String, Diagnostic> {
    let bytes = read_limited(path).map_err(|e| {
        let d = Diagnostic::error(path, e);
        if d.message.contains("at most") {
            d.with_hint("an issue this big is a mistake (pasted data?): link large files instead of including them")
        } else {
            d
        }
    })?;
    decode_text(path, bytes)
}

fn read_limited(path: &Path) -> Result<Vec<u8>, String> {
    read_bounded(path, MAX_TEXT_FILE, "text files")
}

/// Reads a regular file of at most `max` bytes. A FIFO or device is refused before it is
/// opened (opening a FIFO blocks), and the read stops at the bound even if the file grows.
fn read_bounded(path: &Path, max: u64, what: &str) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let meta = fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err(if meta.is_dir() {
            "is a directory, not a file".to_string()
        } else {
            "is not a regular file (a FIFO, socket or device): gazette reads only regular files"
                .to_string()
        });
    }
    let too_big = |len: u64| {
        format!(
            "file is {} MiB; gazette reads {what} of at most {} MiB",
            len / (1024 * 1024),
            max / (1024 * 1024)
        )
    };
    if meta.len() > max {
        return Err(too_big(meta.len()));
    }
    let file = fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > max {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Reads a regular file of at most `max` bytes, as bytes; the error names the file.
pub fn read_bytes(path: &Path, max: u64) -> anyhow::Result<Vec<u8>> {
    read_bounded(path, max, "files")
        .map_err(|e| anyhow::anyhow!("{}: {e}", crate::diagnostic::shown_path(path).display()))
}

/// Fails when `path`, or a directory between `dir` and it, is a symbolic link. gazette writes
/// its outputs (`feeds/`, `outbox/`) only into real directories of the newsletter, so a link
/// planted there cannot redirect a write, or a removal, to somewhere else. Paths outside `dir`
/// (an `--out` the user chose) are not judged.
pub fn refuse_links(dir: &Path, path: &Path) -> anyhow::Result<()> {
    let Ok(rel) = path.strip_prefix(dir) else {
        return Ok(());
    };
    let mut here = dir.to_path_buf();
    for part in rel.components() {
        here.push(part);
        match fs::symlink_metadata(&here) {
            Ok(m) if m.file_type().is_symlink() => anyhow::bail!(
                "{} is a symbolic link; gazette writes only into real directories of the newsletter: remove the link (`rm {}`) and run again",
                crate::diagnostic::shown_path(&here).display(),
                crate::diagnostic::shown_path(&here).display()
            ),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", here.display())),
        }
    }
    Ok(())
}

/// [`write_if_changed`] for an output of the newsletter at `dir`, after [`refuse_links`].
pub fn write_output(dir: &Path, path: &Path, contents: &[u8]) -> anyhow::Result<bool> {
    refuse_links(dir, path)?;
    write_if_changed(path, contents)
}

/// Decodes the bytes of a text file: UTF-8 only, BOM dropped, CRLF as LF.
pub fn decode_text(path: &Path, bytes: Vec<u8>) -> Result<String, Diagnostic> {
    let bytes = match bytes.strip_prefix(b"\xEF\xBB\xBF") {
        Some(rest) => rest.to_vec(),
        None => bytes,
    };
    // simdutf8 checks CJK text several times faster than the standard library, and publish
    // reads every issue; copying the checked bytes costs far less than checking them twice.
    // The standard library's error, which says where the bad byte is, serves the rare failure.
    let checked = simdutf8::basic::from_utf8(&bytes).map(str::to_owned);
    let text = checked.or_else(|_| String::from_utf8(bytes)).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let prefix = String::from_utf8_lossy(&bytes[..valid]);
        let rest_of_line = bytes[valid..]
            .split(|&b| b == b'\n')
            .next()
            .unwrap_or_default();
        let shown = format!("{prefix}{}", String::from_utf8_lossy(rest_of_line));
        let (line, column) = crate::diagnostic::line_column(&prefix, prefix.len());
        Diagnostic::error(
            path,
            format!("the file is not UTF-8 (byte 0x{:02X})", bytes[valid]),
        )
        .at(&shown, line, column)
        .with_hint("save the file as UTF-8; e.g. `iconv -f GB18030 -t UTF-8 FILE`")
    })?;
    Ok(if text.contains('\r') {
        text.replace("\r\n", "\n")
    } else {
        text
    })
}

/// Writes `contents` unless the file already holds exactly these bytes, so unchanged outputs
/// keep their modification time. Returns whether the file was written.
pub fn write_if_changed(path: &Path, contents: &[u8]) -> anyhow::Result<bool> {
    match fs::read(path) {
        Ok(old) if old == contents => return Ok(false),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create directory {}", parent.display()))?;
    }
    // Write a sibling and rename it over, so a reader never sees half a feed.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(TEMP_SUFFIX);
    let tmp = std::path::PathBuf::from(tmp);
    // A failed write (disk full) or rename leaves no temporary file behind.
    if let Err(e) = fs::write(&tmp, contents) {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", tmp.display()));
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(true)
}

/// The suffix of the temporary sibling [`write_if_changed`] writes before renaming it.
pub const TEMP_SUFFIX: &str = ".gazette-tmp";

/// Removes `*.gazette-tmp` files under `root` that a killed run left behind (never following
/// links). Returns how many.
pub fn remove_stale_temporaries(root: &Path) -> usize {
    let mut removed = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(here) = stack.pop() {
        let Ok(entries) = fs::read_dir(&here) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file()
                && entry.file_name().to_string_lossy().ends_with(TEMP_SUFFIX)
                && fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
    }
    removed
}

/// Creates a directory and its parents.
pub fn create_dir_all(path: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(path).with_context(|| format!("cannot create directory {}", path.display()))
}

/// Writes a file, creating its directory; fails if it exists unless `overwrite`.
pub fn write_new(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    if path.exists() {
        anyhow::bail!(
            "{} already exists; gazette will not overwrite it",
            path.display()
        );
    }
    if let Some(parent) = path.parent() {
        create_dir_all(parent)?;
    }
    fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bom_and_crlf_are_normalised() {
        let t = decode_text(Path::new("a"), b"\xEF\xBB\xBFa\r\nb\r\n".to_vec()).unwrap();
        assert_eq!(t, "a\nb\n");
    }

    #[test]
    fn invalid_utf8_is_located() {
        let d = decode_text(Path::new("a.md"), b"ok\nab\xC4\xE3cd\n".to_vec()).unwrap_err();
        assert_eq!((d.line, d.column), (2, 3));
        assert!(d.message.contains("not UTF-8"), "{}", d.message);
    }
}
