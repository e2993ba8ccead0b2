//! `gazette serve` keeps files in memory with their gzip: a file changed in place, replaced,
//! or a link pointed elsewhere is seen on the next request, and a link pointed outside feeds/
//! is refused even after its old target was cached.

use crate::support::{Newsletter, Serve, tool};

/// (status, body) of a GET.
fn get(url: &str) -> (String, String) {
    let r = tool(
        "curl",
        &["-s", "--max-time", "10", "-w", "\n%{http_code}", url],
    );
    let (body, code) = r.stdout.rsplit_once('\n').unwrap();
    (code.to_string(), body.to_string())
}

#[test]
fn serve_cache_sees_every_change_and_never_follows_a_link_out() {
    let n = Newsletter::sample();
    n.gazette(&["publish", "-q"]).ok();
    n.write("feeds/note.txt", "first version\n");
    n.write("outside.txt", "outside feeds\n");
    let link = n.path().join("feeds/link.txt");
    std::os::unix::fs::symlink(n.path().join("feeds/note.txt"), &link).unwrap();
    let serve = Serve::start(&n, &["-q"]);
    let base = format!("http://127.0.0.1:{}/", serve.port);

    for _ in 0..2 {
        assert_eq!(get(&format!("{base}note.txt")).1, "first version\n");
        assert_eq!(get(&format!("{base}link.txt")).1, "first version\n");
    }
    // Changed in place, same length.
    n.write("feeds/note.txt", "other version\n");
    assert_eq!(get(&format!("{base}note.txt")).1, "other version\n");
    assert_eq!(get(&format!("{base}link.txt")).1, "other version\n");
    // Replaced by rename (as an editor or rsync does).
    n.write("feeds/note.new", "third\n");
    std::fs::rename(
        n.path().join("feeds/note.new"),
        n.path().join("feeds/note.txt"),
    )
    .unwrap();
    assert_eq!(get(&format!("{base}note.txt")).1, "third\n");
    // The cached link pointed outside feeds/: refused.
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(n.path().join("outside.txt"), &link).unwrap();
    let (code, body) = get(&format!("{base}link.txt"));
    assert_eq!(code, "404", "{body}");
    assert!(!body.contains("outside"), "{body}");
    // Deleted: 404, not the cached bytes.
    std::fs::remove_file(n.path().join("feeds/note.txt")).unwrap();
    assert_eq!(get(&format!("{base}note.txt")).0, "404");
}
