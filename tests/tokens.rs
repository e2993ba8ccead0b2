//! Unsubscribe links that reveal nothing about the subscriber, with links sent before still
//! working: checked on what `publish` writes and what `gazette unsubscribe` accepts.

use crate::support::Newsletter;

const ADDRESS: &str = "reader@digest.example.org";
const SECRET: &str = "test-secret-not-for-production";
const LIST: &str = "papers.digest.example.org";

/// Everything that would tell who a link is for: the address, its local part, and their
/// base64 (any alphabet, any padding) and hex.
fn revealing() -> Vec<String> {
    let script = r#"
import base64, sys
out = []
for t in [sys.argv[1], sys.argv[1].split("@")[0]]:
    b = t.encode()
    for e in [base64.b64encode(b), base64.urlsafe_b64encode(b)]:
        out += [e.decode(), e.decode().rstrip("=")]
    out += [b.hex(), t]
print("\n".join(out))
"#;
    let run = std::process::Command::new("python3")
        .args(["-c", script, ADDRESS])
        .output()
        .expect("python3");
    String::from_utf8_lossy(&run.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// A token of the form gazette sent before tokens became opaque, made by Python's hmac.
fn old_token(address: &str) -> String {
    let script = r#"
import base64, hashlib, hmac, sys
key, list_id, address = sys.argv[1:4]
tag = hmac.new(key.encode(), list_id.encode() + b"\0" + address.lower().encode(), hashlib.sha256).digest()[:16]
enc = lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")
print(enc(address.encode()) + "." + enc(tag))
"#;
    let run = std::process::Command::new("python3")
        .args(["-c", script, SECRET, LIST, address])
        .output()
        .expect("python3");
    String::from_utf8_lossy(&run.stdout).trim().to_string()
}

#[test]
fn unsubscribe_links_reveal_nothing_and_links_sent_before_still_work() {
    let n = Newsletter::sample();
    n.gazette(&["publish"]).ok();
    let mut links = Vec::new();
    for slug in ["2023-03-papers", "2023-05-reading-notes"] {
        let text = n.read(&format!("outbox/{slug}/email.txt"));
        let html = n.read(&format!("outbox/{slug}/email.html"));
        let eml = n.read(&format!("outbox/{slug}/message.eml"));
        let link = text
            .split_whitespace()
            .find(|w| w.contains("/unsubscribe?token="))
            .expect("the text part has an unsubscribe link")
            .to_string();
        assert!(html.contains(&link), "the HTML carries the same link");
        assert!(
            eml.contains(&format!("<{link}>")),
            "List-Unsubscribe: {eml}"
        );
        let token = link.split("token=").nth(1).unwrap();
        let lower = token.to_lowercase();
        for r in revealing() {
            assert!(!lower.contains(&r.to_lowercase()), "{link} reveals {r}");
        }
        assert!(!token.contains('.'), "{token}");
        links.push(link);
    }
    // One subscriber, one link, in every issue.
    assert_eq!(links[0], links[1]);

    // The link unsubscribes whoever it was made for.
    let run = n.gazette(&["unsubscribe", &links[0]]).ok();
    assert!(run.stderr.contains(ADDRESS), "{}", run.stderr);

    // A link of the old form (already in sent mail) still works.
    let other = "old.link@digest.example.org";
    let old = old_token(other);
    assert!(old.contains('.'), "{old}");
    let url = format!("https://digest.example.org/unsubscribe?token={old}");
    let run = n.gazette(&["unsubscribe", &url]).ok();
    assert!(run.stderr.contains(other), "{}", run.stderr);

    // Forged ones are refused: another address under the old form's tag, a changed
    // character of the new form, a token of another key.
    let forged = format!(
        "{}.{}",
        old_token("victim@digest.example.org")
            .split_once('.')
            .unwrap()
            .0,
        old.split_once('.').unwrap().1
    );
    let token = links[0].split("token=").nth(1).unwrap();
    let mut changed: Vec<char> = token.chars().collect();
    changed[10] = if changed[10] == 'A' { 'B' } else { 'A' };
    let changed: String = changed.into_iter().collect();
    for bad in [forged.as_str(), changed.as_str(), "bm90IGEgdG9rZW4"] {
        let run = n.gazette(&["unsubscribe", bad]).code(1);
        assert!(run.stderr.contains("not valid"), "{bad}: {}", run.stderr);
    }
}
