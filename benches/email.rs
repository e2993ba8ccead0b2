//! `cargo bench --bench email`: how fast gazette builds personalised messages, next to a
//! Python reference measured in the same run.
//!
//! 1. Rendering one issue's email (Markdown, Maud, CSS inlining, text wrapping, encoding):
//!    the per-issue cost `publish` pays, for each sample issue.
//! 2. Personalised messages for N recipients of the March sample issue (default 100,000; set
//!    `GAZETTE_BENCH_RECIPIENTS`), one thread, no network: without DKIM, with an RSA-2048 key
//!    and with an Ed25519 key (throwaway keys made with `openssl` in a temporary directory;
//!    the DKIM runs use fewer recipients, printed); and as `send` builds them, for a relay
//!    without and with 8BITMIME.
//! 3. The reference: `bench/email_reference.py`, a loop that builds one
//!    `email.message.EmailMessage` per subscriber from the same text and HTML.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use gazette::config::Config;
use gazette::issue::{self, Issue};
use gazette::render::email::{Dkim, Prepared, Recipient, Transfer};
use gazette::token::Secret;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn issue(config: &Config, slug: &str) -> Issue {
    let defaults = issue::Defaults {
        timezone: config.timezone,
        id_authority: &config.id_authority,
    };
    Issue::from_file(&root().join("issues").join(format!("{slug}.md")), defaults)
        .expect("the sample issue parses")
        .0
}

fn recipients(n: usize) -> Vec<(String, Option<String>)> {
    (0..n)
        .map(|i| {
            let name = (i % 2 == 0).then(|| format!("读者 {i}"));
            (format!("reader{i}@example.net"), name)
        })
        .collect()
}

/// Builds one message per recipient, as previews do (`None`) or as `send` does for a relay
/// with `transfer`; returns the time and the bytes made.
fn run(
    prepared: &Prepared,
    people: &[(String, Option<String>)],
    transfer: Option<Transfer>,
) -> (Duration, usize) {
    let start = Instant::now();
    let mut bytes = 0;
    for (id, (email, name)) in people.iter().enumerate() {
        let to = Recipient {
            email,
            name: name.as_deref(),
        };
        let out = match transfer {
            None => prepared.message(&to),
            Some(t) => prepared.subscriber_message(&to, id as i64, None, t),
        }
        .expect("a message");
        bytes += out.bytes.len();
        std::hint::black_box(&out);
    }
    (start.elapsed(), bytes)
}

fn key(dir: &Path, name: &str, args: &[&str]) -> String {
    let path = dir.join(format!("{name}.pem"));
    let status = Command::new("openssl")
        .arg("genpkey")
        .args(args)
        .arg("-out")
        .arg(&path)
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl genpkey failed");
    std::fs::read_to_string(path).unwrap()
}

fn report(label: &str, n: usize, took: Duration, bytes: usize) {
    println!(
        "{label:<34} {n:>7} messages in {:>7.3} s = {:>9.0} messages/s ({:.1} KB each)",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        bytes as f64 / n as f64 / 1024.0
    );
}

fn main() {
    let count: usize = std::env::var("GAZETTE_BENCH_RECIPIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let config = Config::from_dir(&root()).expect("the sample settings");
    let templates = gazette::newsletter::templates(&root()).expect("the sample templates");
    let secret = Secret::new("bench-secret-not-for-production");

    println!("== rendering one issue's email (per-issue cost in publish)");
    for slug in [
        "2023-03-papers",
        "2023-04-papers",
        "2023-05-reading-notes",
        "2023-06-one-figure",
    ] {
        let issue = issue(&config, slug);
        let rounds = 200;
        let start = Instant::now();
        let mut size = 0;
        for _ in 0..rounds {
            let p = Prepared::new(&config, &issue, &templates, &secret, None).unwrap();
            size = p.html_part_bytes();
            std::hint::black_box(&p);
        }
        let each = start.elapsed() / rounds;
        println!(
            "{slug:<24} {:>8.1} µs per issue (HTML part {:.1} KB)",
            each.as_secs_f64() * 1e6,
            size as f64 / 1024.0
        );
    }

    let march = issue(&config, "2023-03-papers");
    let people = recipients(count);
    println!("\n== personalised messages, one thread (March issue)");
    let plain = Prepared::new(&config, &march, &templates, &secret, None).unwrap();
    run(&plain, &people[..count.min(1000)], None);
    let (took, bytes) = run(&plain, &people, None);
    report("gazette, no DKIM", count, took, bytes);
    for (label, transfer) in [
        ("gazette, send, 7-bit relay", Transfer::SevenBit),
        ("gazette, send, 8BITMIME relay", Transfer::EightBit),
    ] {
        let (took, bytes) = run(&plain, &people, Some(transfer));
        report(label, count, took, bytes);
    }

    let dir = tempfile::tempdir().unwrap();
    let keys = [
        (
            "gazette, DKIM RSA-2048",
            key(
                dir.path(),
                "rsa",
                &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            ),
            count.min(2_000),
        ),
        (
            "gazette, DKIM Ed25519",
            key(dir.path(), "ed25519", &["-algorithm", "ed25519"]),
            count.min(20_000),
        ),
    ];
    for (label, pem, n) in &keys {
        let dkim = Dkim::from_pem("digest.example.org", "bench", pem).unwrap();
        let signed = Prepared::new(&config, &march, &templates, &secret, Some(&dkim)).unwrap();
        let (took, bytes) = run(&signed, &people[..*n], None);
        report(label, *n, took, bytes);
    }

    // The reference reads the same text and HTML that gazette renders for the sample reader.
    let sample = Recipient {
        email: config.email.sample_recipient.email.as_ref(),
        name: None,
    };
    std::fs::write(dir.path().join("email.txt"), plain.text(&sample)).unwrap();
    std::fs::write(dir.path().join("email.html"), plain.html(&sample)).unwrap();
    let reference_count = count.min(2_000).to_string();
    let output = Command::new("python3")
        .arg(root().join("bench").join("email_reference.py"))
        .arg(dir.path())
        .arg(&reference_count)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    print!("{}", String::from_utf8_lossy(&output.stdout));
}
