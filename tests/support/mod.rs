//! The test builder: a newsletter in a temporary directory, the real `gazette` binary run
//! against it, and the real outside tools (Python parsers, xmllint, sfeed, SMTP servers)
//! that check what it wrote.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository's root: the sample newsletter lives here.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A newsletter in a temporary directory.
pub struct Newsletter {
    pub dir: tempfile::TempDir,
}

/// What one run of gazette did.
#[derive(Debug)]
pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Run {
        Run {
            status: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Fails the test with gazette's output unless it exited 0.
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.status, 0,
            "gazette failed:\n{}\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Fails the test unless gazette exited with `code`.
    #[track_caller]
    pub fn code(self, code: i32) -> Run {
        assert_eq!(
            self.status, code,
            "unexpected exit:\n{}\n{}",
            self.stdout, self.stderr
        );
        assert!(
            !self.stderr.contains("panicked"),
            "gazette panicked:\n{}",
            self.stderr
        );
        self
    }
}

impl Newsletter {
    /// An empty directory.
    pub fn empty() -> Newsletter {
        Newsletter {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    /// A copy of the repository's sample newsletter (settings, issues, templates).
    pub fn sample() -> Newsletter {
        let n = Newsletter::empty();
        let root = repo();
        std::fs::copy(root.join("gazette.toml"), n.path().join("gazette.toml")).unwrap();
        copy_dir(&root.join("issues"), &n.path().join("issues"));
        copy_dir(&root.join("templates"), &n.path().join("templates"));
        n
    }

    /// The sample's settings and templates with no issues.
    pub fn sample_without_issues() -> Newsletter {
        let n = Newsletter::sample();
        std::fs::remove_dir_all(n.path().join("issues")).unwrap();
        std::fs::create_dir(n.path().join("issues")).unwrap();
        n
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file relative to the newsletter.
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> &Self {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
        self
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel))
            .unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.path().join(rel).exists()
    }

    /// A `gazette -C DIR ARGS...` command, ready for more environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_gazette"));
        c.arg("-C").arg(self.path()).args(args);
        c.env_remove("GAZETTE_SMTP_URL")
            .env_remove("GAZETTE_SMTP_PASSWORD")
            .env("GAZETTE_SECRET", "test-secret-not-for-production")
            .env("GAZETTE_NOW", "2026-01-01T00:00:00Z");
        c
    }

    /// Runs `gazette ARGS...` from inside the newsletter (no `-C`), so paths in its messages
    /// read as a user sees them: `issues/x.md:3:8`.
    pub fn gazette_here(&self, args: &[&str]) -> Run {
        let mut c = Command::new(env!("CARGO_BIN_EXE_gazette"));
        c.current_dir(self.path())
            .args(args)
            .env_remove("GAZETTE_SMTP_URL")
            .env_remove("GAZETTE_SMTP_PASSWORD")
            .env("GAZETTE_SECRET", "test-secret-not-for-production")
            .env("GAZETTE_NOW", "2026-01-01T00:00:00Z");
        Run::from(c.output().expect("gazette runs"))
    }

    /// Every file under `rel` with its bytes, sorted by path.
    pub fn snapshot(&self, rel: &str) -> Vec<(PathBuf, Vec<u8>)> {
        let mut found = Vec::new();
        let mut stack = vec![self.path().join(rel)];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let bytes = std::fs::read(&path).unwrap();
                    found.push((path.strip_prefix(self.path()).unwrap().to_path_buf(), bytes));
                }
            }
        }
        found.sort();
        found
    }

    /// Runs `gazette -C DIR ARGS...`.
    pub fn gazette(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("gazette runs"))
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Runs an outside tool; panics with a hint to run `.ci/setup` when it is not installed.
pub fn tool(program: &str, args: &[&str]) -> Run {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `{program}` ({e}): install the test tools with `bash .ci/setup`")
        });
    Run::from(output)
}

/// Runs one of the Python checkers under tests/py/ with the given arguments.
pub fn python(script: &str, args: &[&str]) -> Run {
    let path = repo().join("tests").join("py").join(script);
    let mut all = vec![path.to_str().unwrap()];
    all.extend_from_slice(args);
    tool("python3", &all)
}

/// Runs headless Chromium (at most 60 s) with a fresh profile and the flags this closed
/// network needs, then `args`. Fails the test when Chromium fails.
pub fn chromium(args: &[&str]) -> Run {
    let profile = tempfile::tempdir().unwrap();
    let user_data = format!("--user-data-dir={}", profile.path().display());
    let mut all = vec![
        "60",
        "/usr/bin/chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        user_data.as_str(),
    ];
    all.extend_from_slice(args);
    let run = tool("timeout", &all);
    assert_eq!(run.status, 0, "chromium failed: {}", run.stderr);
    run
}

/// Postfix's `smtp-sink` on 127.0.0.1:`port`, writing each message it receives into `dump`
/// (`-d DIR/%M.`), with a listen backlog of `backlog`; returns once it accepts connections.
pub fn smtp_sink(dump: &Path, port: u16, backlog: u32) -> std::process::Child {
    smtp_sink_with(dump, port, backlog, &[])
}

/// [`smtp_sink`] with more of smtp-sink's options (`-8`: no 8BITMIME).
pub fn smtp_sink_with(
    dump: &Path,
    port: u16,
    backlog: u32,
    options: &[&str],
) -> std::process::Child {
    let child = Command::new("smtp-sink")
        .args(options)
        .args(["-u", "root", "-d"])
        .arg(format!("{}/%M.", dump.display()))
        .arg(format!("127.0.0.1:{port}"))
        .arg(backlog.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("smtp-sink runs (install the test tools with `bash .ci/setup`)");
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "smtp-sink never listened"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child
}
