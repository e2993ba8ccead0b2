//! Markdown -> HTML fragment (and the facts `check` needs about a body). The only module that
//! knows the Markdown parser. Pure: no files, no clock.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use pulldown_cmark::{CowStr, Event, HeadingLevel, Options, Parser, Tag, TagEnd, html};
use url::Url;

/// The Markdown dialect: CommonMark plus tables, strikethrough, footnotes and task lists;
/// bare URLs become links too.
pub fn options() -> Options {
    Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_TASKLISTS
}

/// Where an issue lives on the web, to make every URL in it absolute.
#[derive(Clone, Copy, Debug)]
pub struct Place<'a> {
    /// Where `feeds/` is served; relative paths in the source are relative to `issues/`, which
    /// maps to this URL.
    pub base_url: &'a Url,
    /// The issue's own page (`base_url/<slug>/`), for `#fragment` links.
    pub page_url: &'a Url,
}

/// Makes a link or image destination absolute. `other.md` (another issue's file) becomes that
/// issue's page; other relative paths resolve against `base_url`. None when the destination
/// cannot be made absolute.
pub fn absolute_url(dest: &str, place: Place<'_>) -> Option<String> {
    let dest = dest.trim();
    if dest.is_empty() {
        return Some(place.page_url.to_string());
    }
    if let Some(fragment) = dest.strip_prefix('#') {
        let mut u = place.page_url.clone();
        u.set_fragment(Some(fragment));
        return Some(u.to_string());
    }
    if has_scheme(dest) {
        return Url::parse(dest).ok().map(|u| u.to_string());
    }
    let (path, fragment) = match dest.split_once('#') {
        Some((p, f)) => (p, Some(f)),
        None => (dest, None),
    };
    let path = path.strip_prefix("./").unwrap_or(path);
    let target = match path.strip_suffix(".md") {
        Some(slug) if !slug.contains('/') && !slug.is_empty() => format!("{slug}/"),
        _ => path.to_string(),
    };
    let mut u = place.base_url.join(&target).ok()?;
    if fragment.is_some() {
        u.set_fragment(fragment);
    }
    Some(u.to_string())
}

fn has_scheme(dest: &str) -> bool {
    match dest.split_once(':') {
        Some((scheme, _)) => {
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

/// The parser's events with bare URLs turned into links, every destination made absolute
/// (footnote references too), task-list boxes as text and an `id` on every heading. Links
/// that cannot be made absolute are kept as written.
fn events<'s>(body: &'s str, place: Place<'_>) -> Vec<Event<'s>> {
    let finder = {
        let mut f = linkify::LinkFinder::new();
        f.kinds(&[linkify::LinkKind::Url]);
        f
    };
    let mut in_link = 0usize;
    let mut in_code = 0usize;
    let mut footnotes: HashMap<String, usize> = HashMap::new();
    let mut heading_ids: HashSet<String> = HashSet::new();
    // A heading's events are held back until its text, and so its id, is known.
    let mut heading: Option<(Tag<'s>, Vec<Event<'s>>, String)> = None;
    let mut all: Vec<Event<'s>> = Vec::new();
    // An HTML block comes a line at a time; a tag may span lines, so rewrite it whole.
    let mut block_html = String::new();
    for event in Parser::new_ext(body, options()) {
        let mut out: Vec<Event<'s>> = Vec::with_capacity(1);
        if let Event::Html(h) = &event {
            block_html.push_str(h);
            continue;
        }
        if !block_html.is_empty() {
            let html = std::mem::take(&mut block_html);
            out.push(Event::Html(absolute_html(CowStr::from(html), place)));
        }
        match event {
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            }) => {
                in_link += 1;
                let dest = absolute_url(&dest_url, place).map_or(dest_url, CowStr::from);
                out.push(Event::Start(Tag::Link {
                    link_type,
                    dest_url: dest,
                    title,
                    id,
                }));
            }
            Event::End(TagEnd::Link) => {
                in_link = in_link.saturating_sub(1);
                out.push(Event::End(TagEnd::Link));
            }
            Event::Start(Tag::Image {
                link_type,
                dest_url,
                title,
                id,
            }) => {
                let dest = absolute_url(&dest_url, place).map_or(dest_url, CowStr::from);
                out.push(Event::Start(Tag::Image {
                    link_type,
                    dest_url: dest,
                    title,
                    id,
                }));
            }
            Event::Start(Tag::CodeBlock(kind)) => {
                in_code += 1;
                out.push(Event::Start(Tag::CodeBlock(kind)));
            }
            Event::End(TagEnd::CodeBlock) => {
                in_code = in_code.saturating_sub(1);
                out.push(Event::End(TagEnd::CodeBlock));
            }
            Event::FootnoteReference(label) => {
                let n = footnote_number(&mut footnotes, &label);
                let mut href = place.page_url.clone();
                href.set_fragment(Some(&format!("fn-{n}")));
                out.push(Event::InlineHtml(CowStr::from(format!(
                    "<sup class=\"footnote-reference\"><a href=\"{href}\">{n}</a></sup>"
                ))));
            }
            Event::Start(Tag::FootnoteDefinition(label)) => {
                let n = footnote_number(&mut footnotes, &label);
                // The parser's writer closes this <div> at the definition's end.
                out.push(Event::Html(CowStr::from(format!(
                    "<div class=\"footnote-definition\" id=\"fn-{n}\"><sup class=\"footnote-definition-label\">{n}</sup>"
                ))));
            }
            Event::InlineHtml(h) => out.push(Event::InlineHtml(absolute_html(h, place))),
            Event::TaskListMarker(done) => {
                // Feed readers and email clients drop <input>; a box character survives.
                out.push(Event::Text(CowStr::from(if done {
                    "☑ "
                } else {
                    "☐ "
                })));
            }
            Event::Text(text) if in_link == 0 && in_code == 0 && text.contains(':') => {
                let mut any = false;
                for span in finder.spans(&text) {
                    let s = span.as_str().to_string();
                    if span.kind().is_some() {
                        any = true;
                        out.push(Event::Start(Tag::Link {
                            link_type: pulldown_cmark::LinkType::Autolink,
                            dest_url: CowStr::from(s.clone()),
                            title: CowStr::from(""),
                            id: CowStr::from(""),
                        }));
                        out.push(Event::Text(CowStr::from(s)));
                        out.push(Event::End(TagEnd::Link));
                    } else {
                        out.push(Event::Text(CowStr::from(s)));
                    }
                }
                if !any {
                    out.clear();
                    out.push(Event::Text(text));
                }
            }
            other => out.push(other),
        }
        for event in out {
            match event {
                Event::Start(tag @ Tag::Heading { .. }) if heading.is_none() => {
                    heading = Some((tag, Vec::new(), String::new()));
                }
                Event::End(TagEnd::Heading(level)) => match heading.take() {
                    Some((
                        Tag::Heading {
                            level: l,
                            id,
                            classes,
                            attrs,
                        },
                        inner,
                        text,
                    )) => {
                        let id =
                            id.or_else(|| Some(CowStr::from(heading_id(&text, &mut heading_ids))));
                        all.push(Event::Start(Tag::Heading {
                            level: l,
                            id,
                            classes,
                            attrs,
                        }));
                        all.extend(inner);
                        all.push(Event::End(TagEnd::Heading(level)));
                    }
                    _ => all.push(Event::End(TagEnd::Heading(level))),
                },
                event => match heading.as_mut() {
                    Some((_, inner, text)) => {
                        if let Event::Text(t) | Event::Code(t) = &event {
                            text.push_str(t);
                        }
                        inner.push(event);
                    }
                    None => all.push(event),
                },
            }
        }
    }
    if !block_html.is_empty() {
        all.push(Event::Html(absolute_html(CowStr::from(block_html), place)));
    }
    all
}

/// Raw HTML with its relative `href`, `src` and `poster` values made absolute, so an editor's
/// `<img src="images/x.png" width="300">` works in feeds and email too. Values with a scheme
/// and anything that is not an attribute inside a tag are left as written.
fn absolute_html<'s>(html: CowStr<'s>, place: Place<'_>) -> CowStr<'s> {
    let lower = html.to_ascii_lowercase();
    if !["href", "src", "poster"].iter().any(|a| lower.contains(a)) {
        return html;
    }
    let bytes = html.as_bytes();
    let mut out = String::with_capacity(html.len() + 64);
    let mut copied = 0;
    let mut in_tag = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'<' if !in_tag => in_tag = !lower[i..].starts_with("<!--"),
            b'>' => in_tag = false,
            b if in_tag && b.is_ascii_whitespace() => {
                let rest = &lower[i + 1..];
                let name = ["href", "src", "poster"]
                    .into_iter()
                    .find(|a| rest.starts_with(a));
                if let Some(name) = name {
                    let mut j = i + 1 + name.len();
                    while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                        j += 1;
                    }
                    if bytes.get(j) == Some(&b'=') {
                        j += 1;
                        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                            j += 1;
                        }
                        let (start, end) = match bytes.get(j) {
                            Some(&q @ (b'"' | b'\'')) => {
                                let end = html[j + 1..]
                                    .find(q as char)
                                    .map_or(bytes.len(), |e| j + 1 + e);
                                (j + 1, end)
                            }
                            _ => {
                                let end = html[j..]
                                    .find(|c: char| c.is_ascii_whitespace() || c == '>')
                                    .map_or(bytes.len(), |e| j + e);
                                (j, end)
                            }
                        };
                        let value = &html[start..end];
                        if !value.is_empty() && !has_scheme(value) && !value.starts_with("//") {
                            if let Some(abs) = absolute_url(value, place) {
                                out.push_str(&html[copied..start]);
                                out.push_str(&abs.replace('"', "%22").replace('\'', "%27"));
                                copied = end;
                            }
                        }
                        i = end;
                        continue;
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    if copied == 0 {
        return html;
    }
    out.push_str(&html[copied..]);
    CowStr::from(out)
}

/// The number of a footnote: in order of first mention, as the reader sees them.
fn footnote_number(numbers: &mut HashMap<String, usize>, label: &str) -> usize {
    let next = numbers.len() + 1;
    *numbers.entry(label.to_string()).or_insert(next)
}

/// A heading's anchor: its words (any script) lowercased and joined by `-`, made unique in the
/// page by a `-2`, `-3`... suffix.
fn heading_id(text: &str, used: &mut HashSet<String>) -> String {
    let mut id = String::new();
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if !id.is_empty() {
            id.push('-');
        }
        id.extend(word.chars().flat_map(char::to_lowercase));
    }
    if id.is_empty() {
        id.push_str("section");
    }
    let mut unique = id.clone();
    let mut n = 2;
    while !used.insert(unique.clone()) {
        unique = format!("{id}-{n}");
        n += 1;
    }
    unique
}

/// The body as an HTML fragment with absolute URLs.
pub fn to_html(body: &str, place: Place<'_>) -> String {
    let mut out = String::with_capacity(body.len() * 3 / 2);
    html::push_html(&mut out, events(body, place).into_iter());
    out
}

/// Plain text of the first paragraph, cut to about `max_chars` characters: the summary used
/// when the front matter gives none.
pub fn first_paragraph_text(body: &str, max_chars: usize) -> String {
    let mut text = String::new();
    let mut in_paragraph = false;
    for event in Parser::new_ext(body, options()) {
        match event {
            Event::Start(Tag::Paragraph) => in_paragraph = true,
            Event::End(TagEnd::Paragraph) if !text.trim().is_empty() => break,
            Event::End(TagEnd::Paragraph) => in_paragraph = false,
            Event::Text(t) | Event::Code(t) if in_paragraph => text.push_str(&t),
            Event::SoftBreak | Event::HardBreak if in_paragraph => text.push(' '),
            _ => {}
        }
    }
    let text = crate::issue::one_line(&text);
    if text.chars().count() <= max_chars {
        return text;
    }
    let mut cut: String = text.chars().take(max_chars).collect();
    if let Some(space) = cut.rfind(' ').filter(|&i| i > cut.len() / 2) {
        cut.truncate(space);
    }
    cut.push('…');
    cut
}

/// A link or image in a body, with its byte range in the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkRef {
    pub dest: String,
    pub range: Range<usize>,
    pub is_image: bool,
    /// For images: the alt text.
    pub text: String,
}

/// Every link and image written in the body (not bare URLs, which are absolute already).
pub fn links(body: &str) -> Vec<LinkRef> {
    let mut found: Vec<LinkRef> = Vec::new();
    let mut open_image: Option<usize> = None;
    for (event, range) in Parser::new_ext(body, options()).into_offset_iter() {
        match event {
            Event::Start(Tag::Link { dest_url, .. }) => found.push(LinkRef {
                dest: dest_url.to_string(),
                range,
                is_image: false,
                text: String::new(),
            }),
            Event::Start(Tag::Image { dest_url, .. }) => {
                open_image = Some(found.len());
                found.push(LinkRef {
                    dest: dest_url.to_string(),
                    range,
                    is_image: true,
                    text: String::new(),
                });
            }
            Event::End(TagEnd::Image) => open_image = None,
            Event::Text(t) | Event::Code(t) => {
                if let Some(i) = open_image {
                    found[i].text.push_str(&t);
                }
            }
            _ => {}
        }
    }
    found
}

/// Raw HTML elements in the body that email clients strip or that do not belong in a
/// newsletter: `(tag name, byte range)`.
pub fn unsafe_html(body: &str) -> Vec<(String, Range<usize>)> {
    const TAGS: [&str; 7] = [
        "script", "form", "iframe", "svg", "object", "embed", "input",
    ];
    let mut found = Vec::new();
    for (event, range) in Parser::new_ext(body, options()).into_offset_iter() {
        if let Event::Html(h) | Event::InlineHtml(h) = event {
            let lower = h.to_ascii_lowercase();
            for tag in TAGS {
                if lower.contains(&format!("<{tag}")) {
                    found.push((tag.to_string(), range.clone()));
                }
            }
        }
    }
    found
}

/// Headings that start with a number ("1、", "2.", "3)") whose number skips or repeats the
/// previous numbered heading of the same level: `(message, byte range)`.
pub fn heading_number_problems(body: &str) -> Vec<(String, Range<usize>)> {
    let mut problems = Vec::new();
    let mut last: [Option<u64>; 6] = [None; 6];
    let mut current: Option<(HeadingLevel, Range<usize>, String)> = None;
    for (event, range) in Parser::new_ext(body, options()).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                current = Some((level, range, String::new()))
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some((_, _, text)) = current.as_mut() {
                    text.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                let Some((level, range, text)) = current.take() else {
                    continue;
                };
                let Some(n) = leading_number(&text) else {
                    continue;
                };
                let slot = &mut last[level as usize - 1];
                if let Some(prev) = *slot {
                    if n == prev {
                        problems.push((
                            format!("heading number {n} repeats the previous heading's"),
                            range,
                        ));
                    } else if n != prev + 1 {
                        problems.push((format!("heading number {n} follows {prev}: a number is skipped or out of order"), range));
                    }
                }
                *slot = Some(n);
            }
            _ => {}
        }
    }
    problems
}

fn leading_number(text: &str) -> Option<u64> {
    let text = text.trim_start();
    let digits: String = text.chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.is_empty() || digits.len() > 6 {
        return None;
    }
    let rest = text[digits.len()..].chars().next();
    matches!(
        rest,
        Some('、' | '.' | ')' | '）' | '．' | ':' | '：' | ' ')
    )
    .then(|| digits.parse().ok())?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place() -> (Url, Url) {
        let base = Url::parse("https://d.example.org/papers/").unwrap();
        let page = base.join("march/").unwrap();
        (base, page)
    }

    #[test]
    fn relative_destinations_become_absolute() {
        let (base, page) = place();
        let p = Place {
            base_url: &base,
            page_url: &page,
        };
        let abs = |d: &str| absolute_url(d, p).unwrap();
        assert_eq!(
            abs("images/fig.png"),
            "https://d.example.org/papers/images/fig.png"
        );
        assert_eq!(abs("./april.md"), "https://d.example.org/papers/april/");
        assert_eq!(abs("april.md#x"), "https://d.example.org/papers/april/#x");
        assert_eq!(abs("#notes"), "https://d.example.org/papers/march/#notes");
        assert_eq!(abs("/about"), "https://d.example.org/about");
        assert_eq!(
            abs("https://arxiv.org/abs/2302.13971"),
            "https://arxiv.org/abs/2302.13971"
        );
        assert_eq!(abs("mailto:a@b.org"), "mailto:a@b.org");
    }

    #[test]
    fn html_has_absolute_urls_and_linked_bare_urls() {
        let (base, page) = place();
        let p = Place {
            base_url: &base,
            page_url: &page,
        };
        let html = to_html(
            "见 https://arxiv.org/abs/2302.13971 和 [图](fig.png)。\n\n![图一](images/a.png)\n\n`https://not.a/link`\n",
            p,
        );
        assert!(html.contains(r#"<a href="https://arxiv.org/abs/2302.13971">https://arxiv.org/abs/2302.13971</a> 和"#), "{html}");
        assert!(
            html.contains(r#"<a href="https://d.example.org/papers/fig.png">图</a>"#),
            "{html}"
        );
        assert!(
            html.contains(r#"<img src="https://d.example.org/papers/images/a.png" alt="图一" />"#),
            "{html}"
        );
        assert!(html.contains("<code>https://not.a/link</code>"), "{html}");
    }

    #[test]
    fn summary_is_the_first_paragraph_cut_short() {
        assert_eq!(
            first_paragraph_text("# H\n\n**粗** 体\n字\n\nnext", 100),
            "粗 体 字"
        );
        assert_eq!(first_paragraph_text("一二三四五六", 3), "一二三…");
    }

    #[test]
    fn skipped_and_repeated_heading_numbers_are_found() {
        let body = "## 1、A\n\n## 2、B\n\n## 4、C\n\n## 4、D\n\n## 5. E\n\n### 1) sub\n";
        let problems = heading_number_problems(body);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].0.contains("follows 2"));
        assert!(problems[1].0.contains("repeats"));
    }

    #[test]
    fn image_alt_text_is_collected() {
        let l = links("[a](x.md) ![alt *text*](i.png) ![](j.png)");
        assert_eq!(l.len(), 3);
        assert_eq!(l[1].text, "alt text");
        assert!(l[2].is_image && l[2].text.is_empty());
    }

    // Regression: footnote references were written as `href="#1"`, relative in every feed.
    #[test]
    fn footnote_references_are_absolute_and_numbered() {
        let (base, page) = place();
        let p = Place {
            base_url: &base,
            page_url: &page,
        };
        let html = to_html("a[^x] b[^y] c[^x]\n\n[^y]: why\n\n[^x]: ex\n", p);
        assert!(
            html.contains(r#"<a href="https://d.example.org/papers/march/#fn-1">1</a>"#),
            "{html}"
        );
        assert!(html.contains(r#"#fn-2">2</a>"#), "{html}");
        assert!(
            html.contains(r#"id="fn-2"><sup class="footnote-definition-label">2</sup>"#),
            "{html}"
        );
        assert!(!html.contains("href=\"#"), "{html}");
        assert_eq!(html.matches("</div>").count(), 2, "{html}");
    }

    // Regression: task lists were `<input>` elements, which feed readers and email drop.
    #[test]
    fn task_list_boxes_are_text_not_inputs() {
        let (base, page) = place();
        let p = Place {
            base_url: &base,
            page_url: &page,
        };
        let html = to_html("- [x] done\n- [ ] to do\n", p);
        assert!(!html.contains("<input"), "{html}");
        assert!(
            html.contains("☑ done") && html.contains("☐ to do"),
            "{html}"
        );
    }

    #[test]
    fn headings_get_unique_ids_in_any_script() {
        let (base, page) = place();
        let p = Place {
            base_url: &base,
            page_url: &page,
        };
        let html = to_html(
            "## 1、LLaMA: Open *Models*\n\n## 小结\n\n## 小结\n\n## ???\n",
            p,
        );
        assert!(
            html.contains(r#"<h2 id="1-llama-open-models">1、LLaMA: Open <em>Models</em></h2>"#),
            "{html}"
        );
        assert!(html.contains(r#"<h2 id="小结">"#), "{html}");
        assert!(html.contains(r#"<h2 id="小结-2">"#), "{html}");
        assert!(html.contains(r#"<h2 id="section">"#), "{html}");
    }

    // Regression: relative URLs in raw HTML (`<img src="images/x.png" width="300">`) reached
    // the feeds as written.
    #[test]
    fn raw_html_urls_become_absolute() {
        let (base, page) = place();
        let p = Place {
            base_url: &base,
            page_url: &page,
        };
        let html = to_html(
            "a <img src=\"images/x.png\" alt=\"src=no\"> <a href='april.md#top'>b</a> <a HREF=fig.png>c</a> <a href=\"https://x.org\">d</a>\n\n<p align=center><img\n src=\"y.png\"></p>\n",
            p,
        );
        assert!(
            html.contains(r#"<img src="https://d.example.org/papers/images/x.png" alt="src=no">"#),
            "{html}"
        );
        assert!(
            html.contains("<a href='https://d.example.org/papers/april/#top'>b</a>"),
            "{html}"
        );
        assert!(
            html.contains("<a HREF=https://d.example.org/papers/fig.png>c</a>"),
            "{html}"
        );
        assert!(html.contains(r#"<a href="https://x.org">d</a>"#), "{html}");
        assert!(
            html.contains(r#"src="https://d.example.org/papers/y.png""#),
            "{html}"
        );
    }
}
