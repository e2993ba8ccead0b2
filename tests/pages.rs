//! The web pages in a real browser (headless Chromium) at a phone's width: nothing sticks out
//! sideways, and table cells keep whole words.

use crate::support::{Newsletter, repo};

/// Loads each page in a 375 px wide frame and reports, per page, the document's scroll width
/// and the narrowest table cell.
const MEASURE: &str = r#"<!DOCTYPE html><html><body style="margin:0">
<script>
const pages = PAGES;
const results = {};
for (const page of pages) {
  const f = document.createElement("iframe");
  f.style = "width:375px;height:800px;border:0;display:block";
  f.src = page;
  f.addEventListener("load", () => {
    const w = f.contentWindow, d = w.document;
    const cells = [...d.querySelectorAll("td, th")].map(c => c.getBoundingClientRect().width);
    results[page] = {
      width: w.innerWidth,
      scroll: d.documentElement.scrollWidth,
      narrowest_cell: cells.length ? Math.min(...cells) : null,
      stylesheet: [...d.styleSheets].some(s => s.cssRules.length > 0),
      broken_images: [...d.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src),
    };
    if (Object.keys(results).length === pages.length) {
      document.body.setAttribute("data-results", JSON.stringify(results));
    }
  });
  document.body.appendChild(f);
}
</script></body></html>"#;

#[test]
fn pages_fit_a_phone_screen() {
    let n = Newsletter::sample();
    let wide = repo().join("tests/fixtures/wide-content/2023-08-wide.md");
    n.write("issues/2023-08-wide.md", std::fs::read(wide).unwrap());
    n.gazette(&["publish"]).ok();
    let pages = [
        "index.html",
        "2023-06-one-figure/index.html",
        "2023-03-papers/index.html",
        "2023-05-reading-notes/index.html",
        "2023-08-wide/index.html",
    ];
    let list = serde_json::to_string(&pages).unwrap();
    n.write("feeds/measure.html", MEASURE.replace("PAGES", &list));
    let url = format!("file://{}", n.path().join("feeds/measure.html").display());
    let run = crate::support::chromium(&[
        "--allow-file-access-from-files",
        "--virtual-time-budget=10000",
        "--dump-dom",
        &url,
    ]);
    let start = run
        .stdout
        .find("data-results=\"")
        .unwrap_or_else(|| panic!("no measurements; chromium said:\n{}", run.stderr))
        + "data-results=\"".len();
    let end = start + run.stdout[start..].find('"').unwrap();
    let json = run.stdout[start..end].replace("&quot;", "\"");
    let results: serde_json::Value = serde_json::from_str(&json).unwrap();
    for page in pages {
        let r = &results[page];
        assert_eq!(r["width"], 375, "{page}: {r}");
        assert_eq!(
            r["stylesheet"], true,
            "{page}: the stylesheet did not load: {r}"
        );
        // Links and images to the site itself are relative, so a preview from disk shows them.
        assert_eq!(r["broken_images"], serde_json::json!([]), "{page}: {r}");
        assert!(
            r["scroll"].as_f64().unwrap() <= 375.0,
            "{page} is wider than a phone: {r}"
        );
        if let Some(cell) = r["narrowest_cell"].as_f64() {
            assert!(
                cell >= 48.0,
                "{page}: a table cell is squeezed to {cell}px: {r}"
            );
        }
    }
}
