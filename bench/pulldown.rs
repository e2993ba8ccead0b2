//! The publish benchmark's floor: pulldown-cmark alone turning every issue body in a directory
//! into HTML, on one thread, with gazette's Markdown options. Run by `bench/publish.sh`.

use std::path::PathBuf;

use pulldown_cmark::{Parser, html};

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).expect("usage: pulldown ISSUES_DIR"));
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the issues directory is readable")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    paths.sort();
    let (mut markdown, mut out) = (0, 0);
    for path in paths {
        let text = std::fs::read_to_string(&path).expect("an issue is UTF-8");
        let body = text.splitn(3, "+++\n").nth(2).unwrap_or(&text);
        let mut html = String::with_capacity(body.len() * 3 / 2);
        html::push_html(
            &mut html,
            Parser::new_ext(body, gazette::render::markdown::options()),
        );
        markdown += body.len();
        out += html.len();
    }
    eprintln!("{markdown} bytes of Markdown -> {out} bytes of HTML");
}
