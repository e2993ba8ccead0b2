//! A real Postfix returns real bounces: the test starts a private Postfix instance on
//! 127.0.0.1 (its own config directory, queue, port and mail store; `postfix -c DIR start`,
//! stopped on drop), `gazette send` goes through it with a VERP envelope sender to a virtual
//! domain where two readers do not exist and one mailbox is full, Postfix's own bounce daemon
//! returns its DSNs to the VERP addresses, which the same instance delivers into a Maildir,
//! and `gazette inbound` reads that Maildir. Needs root (Postfix's daemons drop to `postfix`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::Newsletter;

const ISSUE: &str = "2023-03-papers";
/// The full mailbox: an mbox this close to `virtual_mailbox_limit` takes no more mail.
const LIMIT: u64 = 2_000_000;

struct Postfix {
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = self.postfix("stop");
        // Let the master exit before its directories are removed (at most 5 s).
        let start = Instant::now();
        while self.postfix("status").status.success() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn id(flag: &str) -> u32 {
    let out = Command::new("id").args([flag, "postfix"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a `postfix` user (install Postfix with `bash .ci/setup`)")
}

impl Postfix {
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn postfix(&self, command: &str) -> std::process::Output {
        Command::new("postfix")
            .arg("-c")
            .arg(self.path("etc"))
            .arg(command)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("postfix runs (install it with `bash .ci/setup`)")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("maillog")).unwrap_or_default()
    }

    /// `readers.test`: `ok` and `full` exist (full's mbox is at its limit), nobody else does;
    /// `bounces@digest.example.org` (and so `bounces+anything@`) is a Maildir.
    fn start() -> Postfix {
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        assert!(
            is_root,
            "the Postfix test runs as root (it does in CI): postfix's daemons must drop to the postfix user"
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pf = Postfix { dir, port };
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(pf.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["etc", "queue", "data", "mail/readers", "mail/bounces"] {
            std::fs::create_dir_all(pf.path(sub)).unwrap();
        }
        let (uid, gid) = (id("-u"), id("-g"));
        std::fs::write(
            pf.path("etc/main.cf"),
            format!(
                "compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.readers.test
mydomain = readers.test
myorigin = $myhostname
mydestination =
relay_domains =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
# Accept every recipient, so that unknown ones bounce later, as a DSN.
smtpd_reject_unlisted_recipient = no
recipient_delimiter = +
virtual_mailbox_domains = readers.test, digest.example.org
virtual_mailbox_base = {d}/mail
virtual_mailbox_maps = texthash:{d}/etc/vmailbox
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_mailbox_limit = {LIMIT}
message_size_limit = {}
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
delay_warning_time = 0
smtputf8_enable = no
alias_maps =
alias_database =
biff = no
",
                LIMIT / 2
            ),
        )
        .unwrap();
        let mut master = format!("127.0.0.1:{port} inet n - n - - smtpd\n");
        for line in [
            "pickup unix n - n 60 1 pickup",
            "cleanup unix n - n - 0 cleanup",
            "qmgr unix n - n 300 1 qmgr",
            "rewrite unix - - n - - trivial-rewrite",
            "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce",
            "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify",
            "flush unix n - n 1000? 0 flush",
            "proxymap unix - - n - - proxymap",
            "smtp unix - - n - - smtp",
            "relay unix - - n - - smtp",
            "showq unix n - n - - showq",
            "error unix - - n - - error",
            "retry unix - - n - - error",
            "discard unix - - n - - discard",
            "virtual unix - n n - - virtual",
            "anvil unix - - n - 1 anvil",
            "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd",
        ] {
            master.push_str(line);
            master.push('\n');
        }
        std::fs::write(pf.path("etc/master.cf"), master).unwrap();
        std::fs::write(
            pf.path("etc/vmailbox"),
            "ok@readers.test readers/ok/\n\
             full@readers.test readers/full\n\
             bounces@digest.example.org bounces/\n",
        )
        .unwrap();
        let mut mbox = b"From someone@example.org Thu Jan  1 00:00:00 2026\n".to_vec();
        mbox.resize(LIMIT as usize - 500, b'x');
        mbox.extend_from_slice(b"\n\n");
        std::fs::write(pf.path("mail/readers/full"), mbox).unwrap();
        for p in [
            "data",
            "mail",
            "mail/readers",
            "mail/bounces",
            "mail/readers/full",
        ] {
            std::os::unix::fs::chown(pf.path(p), Some(uid), Some(gid)).unwrap();
        }
        let out = pf.postfix("start");
        assert!(
            out.status.success(),
            "postfix -c {d}/etc start failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            pf.log()
        );
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "postfix never listened on {port}:\n{}",
                pf.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        pf
    }

    /// The files in a Maildir's `new/`, once there are `n` of them (waits at most 30 s).
    fn wait_for(&self, maildir: &Path, n: usize) -> Vec<PathBuf> {
        let start = Instant::now();
        loop {
            let files: Vec<PathBuf> = std::fs::read_dir(maildir.join("new"))
                .map(|d| d.map(|e| e.unwrap().path()).collect())
                .unwrap_or_default();
            if files.len() >= n {
                return files;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{} of {n} messages in {} after 30 s; Postfix's log:\n{}",
                files.len(),
                maildir.display(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn postfix_bounces_unknown_readers_back_through_verp_and_a_full_mailbox_is_not_suppressed() {
    let pf = Postfix::start();
    let n = Newsletter::sample();
    let toml = n.read("gazette.toml").replace(
        "[email]\n",
        "[email]\nbounce_address = \"bounces@digest.example.org\"\n",
    );
    n.write("gazette.toml", toml);
    let readers = [
        "ok@readers.test",
        "full@readers.test",
        "ghost@readers.test",
        "phantom@readers.test",
    ];
    for r in readers {
        n.gazette(&["subscribers", "add", r]).ok();
    }
    let sent = n
        .command(&["send", ISSUE, "--yes"])
        .env("GAZETTE_SMTP_URL", format!("smtp://127.0.0.1:{}", pf.port))
        .output()
        .unwrap();
    assert!(
        sent.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&sent.stderr),
        pf.log()
    );
    // Postfix accepted all four; only its bounce daemon knows better.
    let status = n.gazette(&["status", ISSUE, "--json"]).ok().stdout;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["counts"]["sent"], 4, "{status}");
    for r in readers {
        assert_eq!(n.status_of(r), "active", "{r}");
    }

    pf.wait_for(&pf.path("mail/readers/ok"), 1);
    let bounces = pf.path("mail/bounces");
    let dsns = pf.wait_for(&bounces, 3);
    assert_eq!(dsns.len(), 3, "{}", pf.log());
    let log = pf.log();
    for (who, dsn) in [
        ("ghost", "dsn=5.1.1, status=bounced"),
        ("phantom", "dsn=5.1.1, status=bounced"),
        ("full", "dsn=5.2.2, status=bounced"),
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains(&format!("to=<{who}@readers.test>")) && l.contains(dsn)),
            "{who}: {log}"
        );
    }
    // The DSNs went to the VERP addresses, one per reader.
    for d in &dsns {
        let text = std::fs::read_to_string(d).unwrap();
        assert!(
            text.lines()
                .any(|l| l.starts_with("Delivered-To: bounces+")),
            "{text}"
        );
    }

    let md = bounces.display().to_string();
    let out = n.gazette(&["--json", "inbound", &md]).ok().stdout;
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines.iter().all(|l| l["kind"] == "bounce"), "{out}");
    let full = lines
        .iter()
        .find(|l| l["recipients"][0]["address"] == "full@readers.test")
        .unwrap_or_else(|| panic!("no DSN for full: {out}"));
    assert_eq!(full["recipients"][0]["status"], "5.2.2", "{out}");
    assert_eq!(full["action"], "soft bounce counted", "{out}");
    assert_eq!(n.status_of("ghost@readers.test"), "bounced");
    assert_eq!(n.status_of("phantom@readers.test"), "bounced");
    assert_eq!(n.status_of("full@readers.test"), "active");
    assert_eq!(n.status_of("ok@readers.test"), "active");
    // Each was attributed through its VERP token, which also names the issue.
    let db = n.path().join(".gazette/gazette.db").display().to_string();
    let events = crate::support::tool(
        "sqlite3",
        &[
            &db,
            "SELECT s.email, e.kind, e.issue_id IS NOT NULL FROM events e \
             JOIN subscribers s ON s.id = e.subscriber_id ORDER BY s.email",
        ],
    )
    .ok()
    .stdout;
    assert_eq!(
        events,
        "full@readers.test|soft-bounce|1\nghost@readers.test|bounce|1\nphantom@readers.test|bounce|1\n"
    );
    // Processed messages moved to cur/; read again, nothing new happens.
    assert_eq!(std::fs::read_dir(bounces.join("new")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(bounces.join("cur")).unwrap().count(), 3);
    let again = n.gazette(&["inbound", &md]).ok().stdout;
    assert!(again.starts_with("0 message(s)"), "{again}");
}
