//! Markdown -> HTML fragment (and the facts `check` needs about a body). The only module that
//! knows the Markdown parser. Pure: no files, no clock.

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

/// The parser's events with bare URLs turned into links and every destination made absolute.
/// Links that cannot be made absolute are kept as written.
fn events<'s, 'p>(body: &'s str, place: Place<'p>) -> Events<'s, 'p> {
    let mut finder = linkify::LinkFinder::new();
    finder.kinds(&[linkify::LinkKind::Url]);
    Events {
        parser: Parser::new_ext(body, options()),
        place,
        finder,
        in_link: 0,
        in_code: 0,
        pending: Vec::new(),
    }
}

/// The iterator behind [`events`]. Most events pass through one for one; a text with bare URLs
/// becomes several, handed out from `pending` before the parser is asked again.
struct Events<'s, 'p> {
    parser: Parser<'s>,
    place: Place<'p>,
    finder: linkify::LinkFinder,
    in_link: usize,
    in_code: usize,
    /// Events still to hand out, last first.
    pending: Vec<Event<'s>>,
}

impl<'s> Iterator for Events<'s, '_> {
    type Item = Event<'s>;

    fn next(&mut self) -> Option<Event<'s>> {
        if let Some(event) = self.pending.pop() {
            return Some(event);
        }
        let event = match self.parser.next()? {
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            }) => {
                self.in_link += 1;
                let dest = absolute_url(&dest_url, self.place).map_or(dest_url, CowStr::from);
                Event::Start(Tag::Link {
                    link_type,
                    dest_url: dest,
                    title,
                    id,
                })
            }
            Event::End(TagEnd::Link) => {
                self.in_link = self.in_link.saturating_sub(1);
                Event::End(TagEnd::Link)
            }
            Event::Start(Tag::Image {
                link_type,
                dest_url,
                title,
                id,
            }) => {
                let dest = absolute_url(&dest_url, self.place).map_or(dest_url, CowStr::from);
                Event::Start(Tag::Image {
                    link_type,
                    dest_url: dest,
                    title,
                    id,
                })
            }
            Event::Start(Tag::CodeBlock(kind)) => {
                self.in_code += 1;
                Event::Start(Tag::CodeBlock(kind))
            }
            Event::End(TagEnd::CodeBlock) => {
                self.in_code = self.in_code.saturating_sub(1);
                Event::End(TagEnd::CodeBlock)
            }
            Event::Text(text) if self.in_link == 0 && self.in_code == 0 && text.contains(':') => {
                let mut split = Vec::new();
                let mut any = false;
                for span in self.finder.spans(&text) {
                    let s = span.as_str().to_string();
                    if span.kind().is_some() {
                        any = true;
                        split.push(Event::Start(Tag::Link {
                            link_type: pulldown_cmark::LinkType::Autolink,
                            dest_url: CowStr::from(s.clone()),
                            title: CowStr::from(""),
                            id: CowStr::from(""),
                        }));
                        split.push(Event::Text(CowStr::from(s)));
                        split.push(Event::End(TagEnd::Link));
                    } else {
                        split.push(Event::Text(CowStr::from(s)));
                    }
                }
                if !any {
                    return Some(Event::Text(text));
                }
                split.reverse();
                let first = split.pop();
                self.pending = split;
                return first;
            }
            other => other,
        };
        Some(event)
    }
}

/// The body as an HTML fragment with absolute URLs.
pub fn to_html(body: &str, place: Place<'_>) -> String {
    let mut out = String::with_capacity(body.len() * 3 / 2);
    html::push_html(&mut out, events(body, place));
    out
}

/// Plain text of the first paragraph, cut to about `max_chars` characters: the summary used
/// when the front matter gives none.
pub fn first_paragraph_text(body: &str, max_chars: usize) -> String {
    let mut first = FirstParagraph::default();
    for event in Parser::new_ext(body, options()) {
        first.see(&event);
        if first.done {
            break;
        }
    }
    first.into_summary(max_chars)
}

/// [`to_html`] and [`first_paragraph_text`] from one parse of the body, for publish, which
/// needs both for most issues.
pub fn to_html_and_first_paragraph(
    body: &str,
    place: Place<'_>,
    max_chars: usize,
) -> (String, String) {
    let mut first = FirstParagraph::default();
    let mut out = String::with_capacity(body.len() * 3 / 2);
    html::push_html(&mut out, events(body, place).inspect(|e| first.see(e)));
    (out, first.into_summary(max_chars))
}

/// The text of the first paragraph with any text in it, gathered from a body's events.
#[derive(Default)]
struct FirstParagraph {
    text: String,
    in_paragraph: bool,
    done: bool,
}

impl FirstParagraph {
    fn see(&mut self, event: &Event<'_>) {
        if self.done {
            return;
        }
        match event {
            Event::Start(Tag::Paragraph) => self.in_paragraph = true,
            Event::End(TagEnd::Paragraph) if !self.text.trim().is_empty() => self.done = true,
            Event::End(TagEnd::Paragraph) => self.in_paragraph = false,
            Event::Text(t) | Event::Code(t) if self.in_paragraph => self.text.push_str(t),
            Event::SoftBreak | Event::HardBreak if self.in_paragraph => self.text.push(' '),
            _ => {}
        }
    }

    fn into_summary(self, max_chars: usize) -> String {
        let text = crate::issue::one_line(&self.text);
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
    fn rendering_finds_the_same_first_paragraph() {
        let (base, page) = place();
        let p = Place {
            base_url: &base,
            page_url: &page,
        };
        for body in [
            "# H\n\n**粗** 体\n字 [链接](a.md) `code`\n\nnext",
            "> 引用 https://arxiv.org/abs/2302.13971 之后\n\n段落",
            "![](x.png)\n\n- item\n\n真正的 *第一段*  \n硬换行\n",
            "",
        ] {
            let (html, first) = to_html_and_first_paragraph(body, p, 12);
            assert_eq!(html, to_html(body, p));
            assert_eq!(first, first_paragraph_text(body, 12), "{body}");
        }
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
}
