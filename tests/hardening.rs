//! Issue 7's findings, one regression test each, named after its item: what a hostile or
//! careless user did to gazette, and what must hold instead. Each runs the real binary on a
//! copy of the sample.

use std::os::unix::fs::symlink;
use std::path::Path;

use crate::support::{Newsletter, Run};

/// A published copy of the sample with an unsubscribe key on disk, as `gazette init` leaves it.
fn sample_with_secret() -> Newsletter {
    let n = Newsletter::sample();
    n.write(
        ".gazette/secret",
        "a-secret-key-that-signs-unsubscribe-links\n",
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        n.path().join(".gazette/secret"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    n
}

/// Every file under `feeds/`, as paths relative to it.
fn published(n: &Newsletter) -> Vec<String> {
    n.snapshot("feeds")
        .into_iter()
        .map(|(p, _)| {
            p.strip_prefix("feeds")
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// Runs gazette, killing it after 20 s so a hang fails the test instead of stalling it.
fn bounded(n: &Newsletter, args: &[&str]) -> Run {
    let run = n.gazette_timeout(20, args);
    assert_ne!(run.status, 124, "gazette {args:?} hung: {}", run.stderr);
    run
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn hardening_1_a_symlink_to_the_secret_is_never_published() {
    let n = sample_with_secret();
    symlink(
        "../../.gazette/secret",
        n.path().join("issues/images/s.png"),
    )
    .unwrap();
    symlink("/etc", n.path().join("issues/etcdir")).unwrap();
    n.gazette(&["publish"]).ok();
    let files = published(&n);
    assert!(!files.iter().any(|f| f.contains("s.png")), "{files:?}");
    assert!(!files.iter().any(|f| f.starts_with("etcdir")), "{files:?}");
    assert!(files.contains(&"images/consistency-sampling.png".to_string()));

    let check = n.gazette_here(&["check"]);
    assert!(
        check
            .stderr
            .contains("issues/images/s.png: warning: is a symbolic link to ",)
            && check
                .stderr
                .contains("outside issues/; publish never copies it"),
        "{}",
        check.stderr
    );
    assert!(
        check
            .stderr
            .contains("issues/etcdir: warning: is a symbolic link to /etc, outside issues/"),
        "{}",
        check.stderr
    );
}

#[test]
fn hardening_1_an_issue_linking_to_a_symlink_out_fails_to_publish_and_check() {
    let n = sample_with_secret();
    symlink(
        "../../.gazette/secret",
        n.path().join("issues/images/s.png"),
    )
    .unwrap();
    let issue = n.read("issues/2023-03-papers.md") + "\n![key](images/s.png)\n";
    n.write("issues/2023-03-papers.md", issue);
    let run = n.gazette(&["publish"]).code(1);
    assert!(
        run.stderr.contains("images/s.png is a symbolic link to")
            && run
                .stderr
                .contains("publish copies only regular files inside issues/"),
        "{}",
        run.stderr
    );
    assert!(!n.exists("feeds/images/s.png"));
    let check = n.gazette_here(&["check"]).code(1);
    assert!(
        check
            .stderr
            .contains("issues/images/s.png: error: is a symbolic link to"),
        "{}",
        check.stderr
    );
    // The key's bytes are in no message.
    assert!(!run.stderr.contains("a-secret-key") && !check.stderr.contains("a-secret-key"));
}

#[test]
fn hardening_1_publish_preview_and_dry_run_never_write_through_a_linked_folder() {
    let n = sample_with_secret();
    n.gazette(&["publish"]).ok();
    let elsewhere = tempfile::tempdir().unwrap();

    // feeds/<slug> replaced by a link to a directory outside the newsletter.
    std::fs::remove_dir_all(n.path().join("feeds/2023-03-papers")).unwrap();
    symlink(elsewhere.path(), n.path().join("feeds/2023-03-papers")).unwrap();
    let run = n.gazette(&["publish"]).code(1);
    assert!(
        run.stderr
            .contains("feeds/2023-03-papers is a symbolic link"),
        "{}",
        run.stderr
    );
    let check = n.gazette_here(&["check"]).code(1);
    assert!(
        check
            .stderr
            .contains("feeds/2023-03-papers: error: is a symbolic link"),
        "{}",
        check.stderr
    );
    std::fs::remove_file(n.path().join("feeds/2023-03-papers")).unwrap();

    // outbox/<slug> likewise, for preview and send --dry-run (whose files carry valid tokens).
    std::fs::remove_dir_all(n.path().join("outbox/2023-03-papers")).ok();
    symlink(elsewhere.path(), n.path().join("outbox/2023-03-papers")).unwrap();
    n.gazette(&["subscribers", "add", "reader@example.org"])
        .ok();
    let run = n.gazette(&["preview", "2023-03-papers"]).code(1);
    assert!(
        run.stderr
            .contains("outbox/2023-03-papers is a symbolic link"),
        "{}",
        run.stderr
    );
    let run = n.gazette(&["send", "2023-03-papers", "--dry-run"]).code(1);
    assert!(
        run.stderr
            .contains("outbox/2023-03-papers is a symbolic link"),
        "{}",
        run.stderr
    );
    let leaked: Vec<_> = std::fs::read_dir(elsewhere.path()).unwrap().collect();
    assert!(leaked.is_empty(), "written through the link: {leaked:?}");
}

#[test]
fn hardening_2_only_files_the_issues_link_to_are_published() {
    let n = sample_with_secret();
    n.write("issues/private-notes.txt", "not for readers\n");
    n.write("issues/images/unused.png", "png");
    n.gazette(&["publish"]).ok();
    let files = published(&n);
    assert!(
        !files.iter().any(|f| f.contains("private-notes")),
        "{files:?}"
    );
    assert!(!files.iter().any(|f| f.contains("unused.png")), "{files:?}");
    assert!(files.contains(&"images/consistency-sampling.png".to_string()));

    let check = n.gazette_here(&["check"]).ok();
    assert!(
        check.stderr.contains(
            "issues/private-notes.txt: warning: no issue links to this file, so publish does not copy it to feeds/"
        ),
        "{}",
        check.stderr
    );

    // Linked from an issue, in Markdown or raw HTML, a file is published.
    let issue = n.read("issues/2023-03-papers.md")
        + "\n[notes](private-notes.txt)\n\n<img src=\"images/unused.png\" alt=\"x\">\n";
    n.write("issues/2023-03-papers.md", issue);
    n.gazette(&["publish"]).ok();
    let files = published(&n);
    assert!(
        files.contains(&"private-notes.txt".to_string()),
        "{files:?}"
    );
    assert!(
        files.contains(&"images/unused.png".to_string()),
        "{files:?}"
    );
}

#[test]
fn hardening_2_check_refuses_a_dkim_key_inside_issues_or_tracked_by_git() {
    let n = sample_with_secret();
    let pem = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519"])
        .output()
        .unwrap()
        .stdout;
    n.write("issues/dkim.pem", &pem);
    let settings = n.read("gazette.toml")
        + "\n[dkim]\ndomain = \"digest.example.org\"\nselector = \"s1\"\nprivate_key_file = \"issues/dkim.pem\"\n";
    n.write("gazette.toml", &settings);
    let check = n.gazette_here(&["check"]).code(1);
    assert!(
        check.stderr.contains(
            "gazette.toml: error: [dkim] private_key_file is inside issues/, where it can be published"
        ),
        "{}",
        check.stderr
    );
    assert!(!check.stderr.contains("PRIVATE KEY"));
    n.gazette(&["publish"]).ok();
    assert!(!n.exists("feeds/dkim.pem"));

    // A key git tracks is refused too, wherever it is.
    std::fs::rename(n.path().join("issues/dkim.pem"), n.path().join("dkim.pem")).unwrap();
    n.write(
        "gazette.toml",
        settings.replace("issues/dkim.pem", "dkim.pem"),
    );
    let git = |args: &[&str]| {
        let ok = std::process::Command::new("git")
            .arg("-C")
            .arg(n.path())
            .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
            .args(args)
            .output()
            .unwrap()
            .status
            .success();
        assert!(ok, "git {args:?}");
    };
    git(&["init", "-q"]);
    n.write(".gitignore", ".gazette/\n");
    git(&["add", "dkim.pem", ".gitignore"]);
    let check = n.gazette_here(&["check"]).code(1);
    assert!(
        check
            .stderr
            .contains("gazette.toml: error: [dkim] private_key_file is tracked by git"),
        "{}",
        check.stderr
    );
}

#[test]
fn hardening_10_a_fifo_in_issues_neither_hangs_publish_nor_passes_check() {
    let n = sample_with_secret();
    mkfifo(&n.path().join("issues/images/pipe.png"));
    mkfifo(&n.path().join("issues/pipe.md"));
    let check = bounded(&n, &["check"]);
    assert_eq!(check.status, 1, "{}", check.stderr);
    assert!(
        check
            .stderr
            .contains("pipe.md: error: is not a regular file"),
        "{}",
        check.stderr
    );
    assert!(
        check
            .stderr
            .contains("pipe.png: warning: is not a regular file"),
        "{}",
        check.stderr
    );
    let run = bounded(&n, &["publish"]);
    assert_eq!(run.status, 1, "{}", run.stderr);
    std::fs::remove_file(n.path().join("issues/pipe.md")).unwrap();
    let run = bounded(&n, &["publish"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(!n.exists("feeds/images/pipe.png"));
}

#[test]
fn hardening_11_an_issue_linked_to_etc_passwd_is_refused_without_showing_it() {
    let n = sample_with_secret();
    symlink("/etc/passwd", n.path().join("issues/passwd.md")).unwrap();
    let check = n.gazette_here(&["check"]).code(1);
    assert!(
        check.stderr.contains(
            "issues/passwd.md: error: is a symbolic link to /etc/passwd, outside the issues directory"
        ),
        "{}",
        check.stderr
    );
    assert!(!check.stderr.contains("root:"), "{}", check.stderr);
    let run = n.gazette(&["publish"]).code(1);
    assert!(!run.stderr.contains("root:"), "{}", run.stderr);
}

#[test]
fn hardening_10_a_dkim_key_that_never_ends_is_refused_quickly() {
    let n = sample_with_secret();
    let settings = n.read("gazette.toml")
        + "\n[dkim]\ndomain = \"digest.example.org\"\nselector = \"s1\"\nprivate_key_file = \"/dev/zero\"\n";
    n.write("gazette.toml", settings);
    let check = bounded(&n, &["check"]);
    assert_eq!(check.status, 1, "{}", check.stderr);
    assert!(
        check.stderr.contains("/dev/zero: is not a regular file"),
        "{}",
        check.stderr
    );
}

#[test]
fn hardening_3_init_writes_the_welcome_issues_id_so_fixing_its_date_keeps_it() {
    let n = Newsletter::empty();
    n.gazette(&["init"]).ok();
    let welcome = n.read("issues/welcome.md");
    let id_line = welcome
        .lines()
        .find(|l| l.starts_with("id = "))
        .unwrap_or_else(|| panic!("no id in welcome.md:\n{welcome}"));
    let id = id_line.trim_start_matches("id = ").trim_matches('"');
    assert!(id.starts_with("tag:newsletter.example.com,"), "{id}");
    // The editor fixes the date and the id_authority, as check asks: the id stays.
    let date_line = welcome.lines().find(|l| l.starts_with("date = ")).unwrap();
    n.write(
        "issues/welcome.md",
        welcome.replace(date_line, "date = 2025-06-01"),
    );
    let toml = n.read("gazette.toml").replace(
        "id_authority = \"newsletter.example.com\"",
        "id_authority = \"example.net\"",
    );
    n.write("gazette.toml", toml);
    n.gazette(&["publish"]).ok();
    let rss = n.read("feeds/rss.xml");
    assert!(rss.contains(&format!(">{id}</guid>")), "{rss}");
}

#[test]
fn hardening_8_a_deleted_issue_its_assets_and_its_outbox_go_offline() {
    let n = sample_with_secret();
    n.gazette(&["subscribers", "add", "reader@example.org"])
        .ok();
    n.gazette(&["publish"]).ok();
    n.gazette(&["send", "2023-06-one-figure", "--dry-run"]).ok();
    assert!(n.exists("feeds/2023-06-one-figure/index.html"));
    assert!(n.exists("feeds/images/consistency-sampling.png"));
    assert!(n.exists("outbox/2023-06-one-figure/message.eml"));
    // Files the editor put there by hand are not gazette's to remove.
    n.write("feeds/about/index.html", "<p>about</p>");
    n.write("feeds/robots.txt", "User-agent: *\n");
    n.write("outbox/2023-06-one-figure/notes.txt", "mine");

    std::fs::remove_file(n.path().join("issues/2023-06-one-figure.md")).unwrap();
    let run = n.gazette(&["publish", "--json"]).ok();
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    // The page, the image only it showed, and its outbox's three files and one dry-run message.
    assert_eq!(report["removed"], 6, "{report}");
    assert!(!n.exists("feeds/2023-06-one-figure"));
    assert!(
        !n.exists("feeds/images"),
        "the unlinked image's folder stays"
    );
    assert!(!n.exists("outbox/2023-06-one-figure/message.eml"));
    assert!(!n.exists("outbox/2023-06-one-figure/dry-run"));
    assert!(n.exists("outbox/2023-06-one-figure/notes.txt"));
    assert!(n.exists("feeds/about/index.html"));
    assert!(n.exists("feeds/robots.txt"));
    assert!(!n.read("feeds/rss.xml").contains("2023-06-one-figure"));

    // Nothing more goes on the next run, and an asset linked again comes back.
    let again = n.gazette(&["publish", "--json"]).ok();
    assert!(again.stdout.contains("\"removed\":0"), "{}", again.stdout);
    let issue = n.read("issues/2023-05-reading-notes.md")
        + "\n![a sampling chart](images/consistency-sampling.png)\n";
    n.write("issues/2023-05-reading-notes.md", issue);
    n.gazette(&["publish"]).ok();
    assert!(n.exists("feeds/images/consistency-sampling.png"));
}

#[test]
fn hardening_10_a_closed_pipe_ends_the_command_quietly_with_exit_0() {
    let n = sample_with_secret();
    let mut csv = String::from("email\n");
    for i in 0..20_000 {
        csv.push_str(&format!("reader{i:05}@example.org\n"));
    }
    n.write("list.csv", csv);
    let list = n.path().join("list.csv");
    n.gazette(&["subscribers", "import", list.to_str().unwrap()])
        .ok();
    for command in ["subscribers list", "subscribers export", "status"] {
        let script = format!(
            "set -o pipefail; GAZETTE_NOW=2026-01-01T00:00:00Z '{}' -C '{}' {command} | head -1 >/dev/null",
            env!("CARGO_BIN_EXE_gazette"),
            n.path().display()
        );
        let out = std::process::Command::new("bash")
            .args(["-c", &script])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{command}: {stderr}");
        assert!(stderr.is_empty(), "{command}: {stderr}");
    }
}

#[test]
fn hardening_11_a_second_email_column_is_an_error_not_a_guess() {
    let n = sample_with_secret();
    n.write(
        "two.csv",
        "email,name,Email\na@example.org,A,b@example.org\n",
    );
    let list = n.path().join("two.csv");
    let run = n
        .gazette(&["subscribers", "import", list.to_str().unwrap()])
        .code(1);
    assert!(
        run.stderr
            .contains("two.csv:1:1: error: the header row has 2 `email` columns (columns 1, 3)"),
        "{}",
        run.stderr
    );
    let count = n.gazette(&["subscribers", "count"]).ok();
    assert_eq!(count.stdout.trim(), "0");
}

#[test]
fn hardening_11_temporary_files_of_a_failed_publish_do_not_survive() {
    let n = sample_with_secret();
    n.gazette(&["publish"]).ok();
    n.write("feeds/rss.xml.gazette-tmp", "half a feed");
    n.write("feeds/2023-03-papers/index.html.gazette-tmp", "half a page");
    n.write(
        "outbox/2023-03-papers/message.eml.gazette-tmp",
        "half a message",
    );
    n.gazette(&["publish"]).ok();
    let left: Vec<_> = n
        .snapshot("feeds")
        .into_iter()
        .chain(n.snapshot("outbox"))
        .filter(|(p, _)| p.to_string_lossy().ends_with(".gazette-tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn hardening_11_a_line_break_in_unsubscribe_mailto_is_a_located_error() {
    let n = sample_with_secret();
    let toml = n.read("gazette.toml").replace(
        "unsubscribe_mailto = \"mailto:unsubscribe@digest.example.org?subject=unsubscribe\"",
        "unsubscribe_mailto = \"mailto:u@example.org\\r\\nBcc: x@example.org\"",
    );
    n.write("gazette.toml", toml);
    let check = n.gazette_here(&["check"]).code(1);
    assert!(
        check.stderr.contains("gazette.toml:")
            && check.stderr.contains(
                "error: email.unsubscribe_mailto holds a space, a line break, `<` or `>`"
            ),
        "{}",
        check.stderr
    );
}

#[test]
fn hardening_11_the_database_is_private_and_a_readable_secret_is_flagged() {
    use std::os::unix::fs::PermissionsExt;
    let n = sample_with_secret();
    n.gazette(&["subscribers", "add", "reader@example.org"])
        .ok();
    let mode = |rel: &str| {
        std::fs::metadata(n.path().join(rel))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(".gazette/gazette.db"), 0o600);
    std::fs::set_permissions(
        n.path().join(".gazette/secret"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let check = n.gazette_here(&["check"]);
    assert!(
        check.stderr.contains(
            ".gazette/secret: warning: readable by other users of this machine (mode 644)"
        ) && check.stderr.contains("chmod 600 .gazette/secret"),
        "{}",
        check.stderr
    );
}

#[test]
fn hardening_11_an_rsa_key_under_2048_bits_is_refused_for_dkim() {
    let n = sample_with_secret();
    let pem = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:1024",
        ])
        .output()
        .unwrap()
        .stdout;
    n.write(".gazette/dkim.pem", &pem);
    let settings = n.read("gazette.toml")
        + "\n[dkim]\ndomain = \"digest.example.org\"\nselector = \"s1\"\nprivate_key_file = \".gazette/dkim.pem\"\n";
    n.write("gazette.toml", settings);
    let check = n.gazette_here(&["check"]).code(1);
    assert!(
        check
            .stderr
            .contains("the RSA key has 1024 bits; RFC 8301 and Gmail need at least 2048"),
        "{}",
        check.stderr
    );
}

#[test]
fn hardening_11_unsubscribe_takes_the_token_from_a_whole_link() {
    let n = sample_with_secret();
    n.gazette(&["subscribers", "add", "reader@example.org"])
        .ok();
    let secret = gazette::token::Secret::new("test-secret-not-for-production");
    let token = secret.token("papers.digest.example.org", "reader@example.org");
    let link = format!("https://digest.example.org/unsubscribe?token={token}&utm_source=x");
    n.gazette(&["unsubscribe", &link]).ok();
    let count = n.gazette(&["subscribers", "count"]).ok();
    assert_eq!(count.stdout.trim(), "0");
}

#[test]
fn status_without_a_slug_lists_every_issue_newest_first() {
    let n = sample_with_secret();
    n.gazette(&["subscribers", "add", "reader@example.org"])
        .ok();
    let run = n.gazette(&["status"]).ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{}", run.stdout);
    assert!(lines[0].starts_with("2023-07-draft "), "{}", run.stdout);
    assert!(
        lines[0].ends_with("draft (1 subscribers waiting)"),
        "{}",
        run.stdout
    );
    assert!(
        lines[4].starts_with("2023-03-papers ")
            && lines[4].ends_with("not sent (1 subscribers waiting)"),
        "{}",
        run.stdout
    );
    let json = n.gazette(&["status", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 5);
}

/// Runs gazette with its standard error a pipe nobody reads (`gazette publish 2>&1 | head -1`
/// once `head` has gone): every write to it fails with EPIPE.
fn with_stderr_closed(n: &Newsletter, args: &[&str]) -> (Option<i32>, String) {
    let mut child = n
        .command(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn hardening_12_a_closed_stderr_neither_panics_nor_stops_the_work() {
    let n = sample_with_secret();
    // A warning to print, so publish writes to standard error before it writes the feeds.
    n.write(
        "issues/deep.md",
        format!(
            "+++\ntitle = \"Deep\"\ndate = 2023-09-01\n+++\n{} x\n",
            ">".repeat(40)
        ),
    );
    let (code, _) = with_stderr_closed(&n, &["check"]);
    assert_eq!(code, Some(0), "check");
    let (code, _) = with_stderr_closed(&n, &["publish"]);
    assert_eq!(code, Some(0), "publish");
    assert!(n.read("feeds/atom.xml").contains("Deep"));
    // A row with a bad address is reported on standard error; the good one is still added.
    n.write("list.csv", "email\nnot-an-address\nreader@example.org\n");
    let list = n.path().join("list.csv");
    let (code, _) = with_stderr_closed(&n, &["subscribers", "import", list.to_str().unwrap()]);
    assert_ne!(code, Some(101), "subscribers import panicked");
    let (code, stdout) = with_stderr_closed(&n, &["subscribers", "list"]);
    assert_eq!(code, Some(0), "subscribers list");
    assert!(stdout.contains("reader@example.org"), "{stdout}");
    // An error: exit 1, not a panic's 101.
    let (code, _) = with_stderr_closed(&n, &["status", "no-such-issue"]);
    assert_eq!(code, Some(1), "status of an unknown issue");
}

#[test]
fn hardening_12_new_refuses_a_slug_or_title_check_would_refuse_and_writes_nothing() {
    let n = sample_with_secret();
    let before = n.snapshot("issues");
    for slug in ["../outside", "a/b", "Upper", ".hidden", "-x", "rss.xml", ""] {
        let run = n
            .gazette(&["new", "A title", &format!("--slug={slug}")])
            .code(1);
        assert!(
            run.stderr
                .contains(&format!("`{slug}` cannot be an issue's slug")),
            "{slug}: {}",
            run.stderr
        );
        assert!(run.stderr.contains("--slug"), "{slug}: {}", run.stderr);
    }
    for title in ["", "  ", "\u{200b}"] {
        let run = n.gazette(&["new", title]).code(1);
        assert!(
            run.stderr.contains("the title is empty"),
            "{title:?}: {}",
            run.stderr
        );
    }
    assert!(!n.exists("outside.md") && !n.exists("issues/a"));
    assert_eq!(n.snapshot("issues"), before, "new wrote a file it refused");
}

#[test]
fn hardening_12_a_subject_too_long_for_an_inbox_is_a_located_warning_from_new_and_check() {
    let n = sample_with_secret();
    // The sample's titles and subjects fit: no such warning.
    let run = n.gazette(&["check"]).ok();
    assert!(!run.stderr.contains("columns wide"), "{}", run.stderr);

    let long = "论文".repeat(2_500);
    let run = n.gazette(&["new", &long, "--slug", "long"]).ok();
    assert!(n.exists("issues/long.md"), "new refused a long title");
    assert!(
        run.stderr.contains(
            "issues/long.md:2:9: warning: the email's subject (title) is 10000 columns wide"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("set a shorter `subject"),
        "{}",
        run.stderr
    );

    // A subject set short silences it; a long subject is itself the warning, at its line.
    n.write(
        "issues/long.md",
        format!("+++\ntitle = \"{long}\"\ndate = 2023-09-01\nsubject = \"九月\"\n+++\n\nText.\n"),
    );
    let run = n.gazette(&["check"]).ok();
    assert!(!run.stderr.contains("columns wide"), "{}", run.stderr);
    let subject = "word ".repeat(30);
    n.write(
        "issues/long.md",
        format!(
            "+++\ntitle = \"September\"\ndate = 2023-09-01\nsubject = \"{subject}\"\n+++\n\nText.\n"
        ),
    );
    let run = n.gazette(&["check"]).ok();
    assert!(
        run.stderr.contains(
            "issues/long.md:4:11: warning: the email's subject (subject) is 149 columns wide"
        ),
        "{}",
        run.stderr
    );
    // A warning, not an error: publish prints it and the issue still goes out.
    let run = n.gazette(&["publish"]).ok();
    assert!(
        run.stderr
            .contains("issues/long.md:4:11: warning: the email's subject"),
        "{}",
        run.stderr
    );
    assert!(n.read("feeds/feed.json").contains("September"));
}
