//! `gazette inbound --imap` against a real Dovecot: its own config, a passwd-file user, a
//! Maildir holding bounce fixtures, a certificate from a throwaway CA made with openssl.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Newsletter, Run, free_port, tool};

const PASSWORD: &str = "imap-test-password-not-secret";

/// Dovecot serving IMAPS on 127.0.0.1; stopped when dropped.
struct Dovecot {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dovecot {
    fn maildir(&self) -> PathBuf {
        self.dir.path().join("Maildir")
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// Puts a fixture into the mailbox's new/ as a fresh delivery.
    fn deliver(&self, fixture: &str, n: usize) {
        std::fs::copy(
            crate::support::repo()
                .join("tests/fixtures/inbound")
                .join(fixture),
            self.maildir()
                .join("new")
                .join(format!("17646696{n:02}.M{n}P1.test")),
        )
        .unwrap();
    }

    fn start(fixtures: &[&str]) -> Dovecot {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        certificates(d);
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(d.join("Maildir").join(sub)).unwrap();
        }
        for sub in ["run", "state", "home"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let mut uid = tool("id", &["-u"]).ok().stdout.trim().to_string();
        let mut gid = tool("id", &["-g"]).ok().stdout.trim().to_string();
        if uid == "0" {
            // Dovecot never stores mail as root: the mailbox belongs to its own user.
            uid = tool("id", &["-u", "dovecot"])
                .ok()
                .stdout
                .trim()
                .to_string();
            gid = tool("id", &["-g", "dovecot"])
                .ok()
                .stdout
                .trim()
                .to_string();
            let owner = format!("{uid}:{gid}");
            for sub in ["Maildir", "home"] {
                tool("chown", &["-R", &owner, &d.join(sub).display().to_string()]).ok();
            }
        }
        // Dovecot's login processes must not run as root: as root (CI), the package's own
        // unprivileged users; otherwise the current user for everything.
        let root = tool("id", &["-u"]).ok().stdout.trim() == "0";
        let (user, group, login) = if root {
            (
                "dovecot".to_string(),
                "dovecot".to_string(),
                "dovenull".to_string(),
            )
        } else {
            let user = tool("id", &["-un"]).ok().stdout.trim().to_string();
            let group = tool("id", &["-gn"]).ok().stdout.trim().to_string();
            (user.clone(), group, user)
        };
        // Those users read the configuration's directory (the password is a test constant).
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(
            d.join("passwd"),
            format!(
                "reader:{{PLAIN}}{PASSWORD}:{uid}:{gid}::{}\n",
                d.join("home").display()
            ),
        )
        .unwrap();
        let port = free_port();
        let p = |rel: &str| d.join(rel).display().to_string();
        let config = format!(
            r#"
base_dir = {run}
state_dir = {state}
log_path = {log}
info_log_path = {log}
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain
first_valid_uid = {uid}
first_valid_gid = {gid}
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {login}
mail_location = maildir:{maildir}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={home}
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  unix_listener stats-reader {{
    user = {user}
  }}
  unix_listener stats-writer {{
    user = {user}
  }}
}}
"#,
            run = p("run"),
            state = p("state"),
            log = p("dovecot.log"),
            cert = p("server.crt"),
            key = p("server.key"),
            maildir = p("Maildir"),
            passwd = p("passwd"),
            home = p("home"),
        );
        std::fs::write(d.join("dovecot.conf"), config).unwrap();
        let child = Command::new("dovecot")
            .arg("-F")
            .arg("-c")
            .arg(d.join("dovecot.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dovecot runs (install with `bash .ci/setup`)");
        let dovecot = Dovecot { child, dir, port };
        for (i, f) in fixtures.iter().enumerate() {
            dovecot.deliver(f, i);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "dovecot did not listen on {port}:\n{}",
                dovecot.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        dovecot
    }
}

/// A throwaway CA and a server certificate it signed for 127.0.0.1 (openssl).
fn certificates(d: &Path) {
    let p = |rel: &str| d.join(rel).display().to_string();
    let ossl = |args: &[&str]| {
        let run = tool("openssl", args);
        assert_eq!(run.status, 0, "openssl {args:?}: {}", run.stderr);
    };
    // A P-256 private key at `rel`.
    let key = |rel: &str| {
        ossl(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            &p(rel),
        ])
    };
    key("ca.key");
    ossl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        &p("ca.key"),
        "-days",
        "2",
        "-subj",
        "/CN=gazette test CA",
        "-out",
        &p("ca.crt"),
    ]);
    key("server.key");
    ossl(&[
        "req",
        "-new",
        "-key",
        &p("server.key"),
        "-subj",
        "/CN=127.0.0.1",
        "-out",
        &p("server.csr"),
    ]);
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName = IP:127.0.0.1, DNS:localhost\nextendedKeyUsage = serverAuth\n\
         basicConstraints = CA:FALSE\n",
    )
    .unwrap();
    ossl(&[
        "x509",
        "-req",
        "-in",
        &p("server.csr"),
        "-CA",
        &p("ca.crt"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p("ext.cnf"),
        "-out",
        &p("server.crt"),
    ]);
}

fn imap(n: &Newsletter, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = n.command(args);
    c.env_remove("GAZETTE_IMAP_PASSWORD")
        .env_remove("GAZETTE_IMAP_CA");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("gazette runs");
    let run = Run::from(out);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(
        !run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD),
        "the password was printed"
    );
    run
}

#[test]
fn imap_bounces_are_applied_once_even_when_run_twice() {
    let dovecot = Dovecot::start(&[
        "postfix-5.1.1.eml",
        "arf-abuse.eml",
        "postfix-5.2.2-full.eml",
        "vacation-plain.eml",
    ]);
    let n = Newsletter::sample();
    for a in ["gone", "angry", "full", "reader", "nobody"] {
        n.gazette(&["subscribers", "add", &format!("{a}@example.org")])
            .ok();
    }
    let url = format!("imaps://reader@127.0.0.1:{}/INBOX", dovecot.port);
    let ca = dovecot.ca().display().to_string();
    let env = [
        ("GAZETTE_IMAP_PASSWORD", PASSWORD),
        ("GAZETTE_IMAP_CA", ca.as_str()),
    ];

    // A password in the URL is refused without being printed.
    let with_pw = format!("imaps://reader:{PASSWORD}@127.0.0.1:{}/INBOX", dovecot.port);
    let run = imap(&n, &["inbound", "--imap", &with_pw], &env);
    assert_ne!(run.status, 0);
    assert!(
        run.stderr.contains("GAZETTE_IMAP_PASSWORD"),
        "{}",
        run.stderr
    );
    // No password: refused before connecting.
    let run = imap(&n, &["inbound", "--imap", &url], &env[1..]);
    assert_ne!(run.status, 0);
    assert!(
        run.stderr.contains("set GAZETTE_IMAP_PASSWORD"),
        "{}",
        run.stderr
    );
    // The certificate is checked: without the test CA the handshake fails.
    let run = imap(&n, &["inbound", "--imap", &url], &env[..1]);
    assert_ne!(run.status, 0);
    assert!(
        run.stderr.to_lowercase().contains("certificate"),
        "{}\n{}",
        run.stderr,
        dovecot.log()
    );
    // Plain imap:// to anything but loopback is refused.
    let run = imap(
        &n,
        &["inbound", "--imap", "imap://reader@192.0.2.1/INBOX"],
        &env,
    );
    assert_ne!(run.status, 0);
    assert!(run.stderr.contains("only for 127.0.0.1"), "{}", run.stderr);
    // A wrong password is a clear error.
    let run = imap(
        &n,
        &["inbound", "--imap", &url],
        &[("GAZETTE_IMAP_PASSWORD", "wrong"), ("GAZETTE_IMAP_CA", &ca)],
    );
    assert_ne!(run.status, 0);
    assert!(run.stderr.contains("login as reader"), "{}", run.stderr);

    // --dry-run: classified, nothing changed, here or on the server (read twice).
    for _ in 0..2 {
        let run = imap(
            &n,
            &["--json", "inbound", "--dry-run", "--imap", &url],
            &env,
        );
        assert_eq!(run.status, 0, "{}\n{}", run.stderr, dovecot.log());
        let kinds: Vec<String> = run
            .stdout
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                assert!(v["source"].as_str().unwrap().contains(";UID="), "{v}");
                v["kind"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(kinds, ["bounce", "complaint", "bounce", "autoreply"]);
    }
    assert_eq!(n.status_of("gone@example.org"), "active");

    // For real: applied, and each message gets the keyword on the server.
    let run = imap(&n, &["inbound", "--imap", &url], &env);
    assert_eq!(run.status, 0, "{}\n{}", run.stderr, dovecot.log());
    assert!(
        run.stdout
            .starts_with("4 message(s): 1 autoreply, 2 bounce, 1 complaint"),
        "{}",
        run.stdout
    );
    assert_eq!(n.status_of("gone@example.org"), "bounced");
    assert_eq!(n.status_of("angry@example.org"), "complained");
    assert_eq!(n.status_of("full@example.org"), "active");
    assert_eq!(n.status_of("reader@example.org"), "active");
    let keywords =
        std::fs::read_to_string(dovecot.maildir().join("dovecot-keywords")).unwrap_or_default();
    assert!(keywords.contains("$GazetteProcessed"), "{keywords:?}");

    // Second run: nothing again.
    let run = imap(&n, &["inbound", "--imap", &url], &env);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(run.stdout.starts_with("0 message(s)"), "{}", run.stdout);

    // A new bounce arrives: only it is read.
    n.gazette(&["subscribers", "add", "nobody@exim.example"])
        .ok();
    dovecot.deliver("exim-plain.eml", 10);
    let run = imap(&n, &["--json", "inbound", "--imap", &url], &env);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
    assert_eq!(n.status_of("nobody@exim.example"), "bounced");
    let run = imap(&n, &["inbound", "--imap", &url], &env);
    assert!(run.stdout.starts_with("0 message(s)"), "{}", run.stdout);
}
