//! Every sample issue as a real SMTP server receives it (Postfix's smtp-sink on 127.0.0.1),
//! scored by SpamAssassin with local rules only.

use std::time::Duration;

use crate::support::{Newsletter, Sink};

const ISSUES: [&str; 4] = [
    "2023-03-papers",
    "2023-04-papers",
    "2023-05-reading-notes",
    "2023-06-one-figure",
];

#[test]
fn every_sample_issue_as_received_over_smtp_trips_no_rule_but_the_cjk_obfuscation_bands() {
    let sink = Sink::start();
    let n = Newsletter::sample();
    n.add_readers(&["reader@example.org"]);
    // One issue at a time, so that each file the sink writes is known to be that issue's.
    let mut received: Vec<(&str, std::path::PathBuf)> = Vec::new();
    for slug in ISSUES {
        let mut c = n.command(&["send", slug, "--yes"]);
        c.env("GAZETTE_SMTP_URL", sink.url());
        let out = c.output().expect("gazette runs");
        assert!(
            out.status.success(),
            "{slug}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want = received.len() + 1;
        let arrived = sink.wait_for_files(want, Duration::from_secs(20));
        assert_eq!(arrived, want, "{slug}: {:?}", sink.files());
        let new = sink
            .files()
            .into_iter()
            .find(|f| received.iter().all(|(_, seen)| seen != f))
            .expect("the new file");
        received.push((slug, new));
    }
    for (slug, path) in &received {
        let text = std::fs::read_to_string(path).unwrap();
        // Really as received: smtp-sink's own trace header, then gazette's message.
        assert!(text.contains("Received: from"), "{text:.600}");
        assert!(text.contains("List-Unsubscribe-Post"), "{text:.600}");
        let spam = crate::support::spamassassin(path);
        eprintln!("{slug}: {}{}", spam.score, spam.details);
        // Held as a reader's filter would score it: ALL_TRUSTED's credit (earned by
        // crossing only 127.0.0.1) does not cover for anything.
        let tolerated = crate::support::OBFUSCATION_TOLERATED.contains(slug);
        let against = spam.against(tolerated);
        assert!(against.is_empty(), "{slug}: {against:?}:{}", spam.details);
        if !tolerated {
            let score = spam.score_untrusted();
            assert!(
                score <= 0.0,
                "{slug} scores {score} untrusted:{}",
                spam.details
            );
        }
    }
}

/// Regression: `gazette init` in a directory whose name holds a dot (`.tmpXYZ`, `my.news`)
/// made a `From:` display name that lettre writes bare, an obsolete phrase that parsers flag.
#[test]
fn a_sender_name_with_a_dot_is_quoted_in_from() {
    let n = Newsletter::empty();
    n.gazette(&["init"]).ok();
    let name = n.path().file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.contains('.'), "{name}");
    n.gazette(&["publish"]).ok();
    let outbox = n.path().join("outbox");
    let slug = std::fs::read_dir(&outbox)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let eml = slug.join("message.eml");
    let text = std::fs::read_to_string(&eml).unwrap();
    assert!(text.contains(&format!("From: \"{name}\" <")), "{text:.400}");
    let script = r#"
import email, email.policy, sys
m = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=email.policy.default)
f = m["From"]
print(len(f.defects), f.addresses[0].display_name)
"#;
    let run = std::process::Command::new("python3")
        .args(["-c", script, eml.to_str().unwrap()])
        .output()
        .expect("python3");
    let out = String::from_utf8_lossy(&run.stdout);
    assert_eq!(
        out.trim(),
        format!("0 {name}"),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}
