//! Markdown -> HTML fragment, -> plain text wrapped for email, and the facts `check` needs about
//! a body. The only module that knows the Markdown parser. Pure: no files, no clock.

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

/// The scheme of a URL as written (`https` of `https://…`), if it has one.
pub fn scheme(dest: &str) -> Option<&str> {
    let dest = dest.trim();
    has_scheme(dest).then(|| dest.split_once(':').map_or("", |(s, _)| s))
}

/// Whether a link or image may use this URL: not empty, and with no scheme (a path relative
/// to `issues/`, a `#fragment`) or a scheme a reader's software knows that runs no script.
/// `check` reports the others, located.
pub fn usable_url(dest: &str) -> bool {
    const SCHEMES: [&str; 14] = [
        "http", "https", "mailto", "tel", "sms", "ftp", "ftps", "sftp", "news", "irc", "ircs",
        "xmpp", "geo", "webcal",
    ];
    if dest.trim().is_empty() {
        return false;
    }
    match scheme(dest) {
        None => true,
        Some(s) => SCHEMES.iter().any(|k| k.eq_ignore_ascii_case(s)),
    }
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

/// How deep blocks and spans may nest (a quote in a list item in a quote... counts each).
/// Deeper levels are flattened into the level above: their text is kept, their structure is
/// not. Renderers downstream (the CSS inliner, HTML parsers in mail clients) recurse once per
/// level; a 10 KB body of `- - - …` would otherwise overflow their stacks.
pub const MAX_NESTING: usize = 32;

/// The parser's events with their byte ranges, nesting beyond [`MAX_NESTING`] flattened: the
/// start and end of a deeper tag are dropped (the end of a block becomes a soft break, so
/// words of flattened items stay apart), everything inside is kept. A table is kept or
/// dropped whole, since its parts only make sense together.
struct Flattened<'s> {
    parser: pulldown_cmark::OffsetIter<'s, pulldown_cmark::DefaultBrokenLinkCallback>,
    /// For each open tag, whether it was kept.
    open: Vec<bool>,
    /// Open tags that were kept.
    depth: usize,
    /// Where each run of flattened tags starts.
    flattened: Vec<Range<usize>>,
}

impl<'s> Flattened<'s> {
    fn new(body: &'s str) -> Flattened<'s> {
        Flattened {
            parser: Parser::new_ext(body, options()).into_offset_iter(),
            open: Vec::new(),
            depth: 0,
            flattened: Vec::new(),
        }
    }
}

impl<'s> Iterator for Flattened<'s> {
    type Item = (Event<'s>, Range<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (event, range) = self.parser.next()?;
            match &event {
                Event::Start(tag) => {
                    let levels = if matches!(tag, Tag::Table(_)) { 3 } else { 1 };
                    let parent_kept = self.open.last().copied().unwrap_or(true);
                    let keep = parent_kept && self.depth + levels <= MAX_NESTING;
                    self.open.push(keep);
                    if keep {
                        self.depth += 1;
                        return Some((event, range));
                    }
                    if parent_kept {
                        self.flattened.push(range);
                    }
                }
                Event::End(end) => {
                    if self.open.pop().unwrap_or(true) {
                        self.depth = self.depth.saturating_sub(1);
                        return Some((event, range));
                    }
                    if is_block(*end) {
                        return Some((Event::SoftBreak, range));
                    }
                }
                _ => return Some((event, range)),
            }
        }
    }
}

fn is_block(end: TagEnd) -> bool {
    !matches!(
        end,
        TagEnd::Emphasis
            | TagEnd::Strong
            | TagEnd::Strikethrough
            | TagEnd::Superscript
            | TagEnd::Subscript
            | TagEnd::Link
            | TagEnd::Image
    )
}

/// The parser's events, nesting bounded by [`MAX_NESTING`].
fn parse(body: &str) -> impl Iterator<Item = Event<'_>> {
    Flattened::new(body).map(|(event, _)| event)
}

/// Where nesting deeper than [`MAX_NESTING`] levels is flattened: `(message, byte range)`.
pub fn nesting_problems(body: &str) -> Vec<(String, Range<usize>)> {
    let mut events = Flattened::new(body);
    events.by_ref().for_each(drop);
    events
        .flattened
        .into_iter()
        .map(|range| {
            (
                format!("nested more than {MAX_NESTING} levels deep: the deeper levels are flattened into one"),
                range,
            )
        })
        .collect()
}

/// Who reads the events: the HTML writer, or the plain-text renderer, which shows footnotes
/// and task-list boxes in its own way.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Html,
    /// HTML for email: task items carry one marker, footnote numbers stand in their text.
    Email,
    Text,
}

/// The parser's events with bare URLs turned into links, every destination made absolute and
/// an `id` on every heading; for HTML also footnote references as absolute links and
/// task-list boxes as text. Links that cannot be made absolute are kept as written.
/// `first`, when given, sees the parser's own events (before any rewriting), so publish gets
/// the summary from the same parse.
fn events<'s>(
    body: &'s str,
    place: Place<'_>,
    target: Target,
    mut first: Option<&mut FirstParagraph>,
) -> Vec<Event<'s>> {
    let finder = {
        let mut f = linkify::LinkFinder::new();
        f.kinds(&[linkify::LinkKind::Url]);
        f
    };
    let mut in_link = 0usize;
    // For each open link and image, whether it is written (false: only its text is).
    let mut links_kept: Vec<bool> = Vec::new();
    let mut images_kept: Vec<bool> = Vec::new();
    let mut in_code = 0usize;
    let mut footnotes: HashMap<String, usize> = HashMap::new();
    // Email: the number of the note just opened, written at the start of its first paragraph.
    let mut note_label: Option<usize> = None;
    let mut heading_ids: HashSet<String> = HashSet::new();
    // A heading's events are held back until its text, and so its id, is known.
    let mut heading: Option<(Tag<'s>, Vec<Event<'s>>, String)> = None;
    // About one event per 8 bytes of Markdown.
    let mut all: Vec<Event<'s>> = Vec::with_capacity(body.len() / 8);
    // An HTML block comes a line at a time; a tag may span lines, so rewrite it whole.
    let mut block_html = String::new();
    // The events one parser event becomes; reused, since nearly every event becomes one.
    let mut out: Vec<Event<'s>> = Vec::new();
    for event in parse(body) {
        if let Some(first) = first.as_deref_mut() {
            first.see(&event);
        }
        if let Event::Html(h) = &event {
            block_html.push_str(h);
            continue;
        }
        if !block_html.is_empty() {
            let html = std::mem::take(&mut block_html);
            out.push(Event::Html(absolute_html(CowStr::from(html), place)));
        }
        if let Some(n) = note_label.take() {
            let label = Event::InlineHtml(CowStr::from(format!(
                "<sup class=\"footnote-definition-label\">{n}</sup> "
            )));
            if matches!(event, Event::Start(Tag::Paragraph)) {
                all.append(&mut out);
                all.push(event);
                all.push(label);
                continue;
            }
            all.push(label);
        }
        match event {
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            }) => {
                in_link += 1;
                // A URL gazette cannot use (empty, `hhttps:`, `javascript:`) leaves its text
                // unlinked rather than a broken or dangerous link; `check` says where.
                links_kept.push(usable_url(&dest_url));
                if !usable_url(&dest_url) {
                    continue;
                }
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
                if links_kept.pop() != Some(false) {
                    out.push(Event::End(TagEnd::Link));
                }
            }
            Event::Start(Tag::Image { dest_url, .. }) if !usable_url(&dest_url) => {
                // The alt text stands in for an image gazette cannot show.
                images_kept.push(false);
            }
            Event::End(TagEnd::Image) => {
                if images_kept.pop() != Some(false) {
                    out.push(Event::End(TagEnd::Image));
                }
            }
            Event::Start(Tag::Image {
                link_type,
                dest_url,
                title,
                id,
            }) => {
                images_kept.push(true);
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
            Event::FootnoteReference(label) if target != Target::Text => {
                let n = footnote_number(&mut footnotes, &label);
                let mut href = place.page_url.clone();
                href.set_fragment(Some(&format!("fn-{n}")));
                out.push(Event::InlineHtml(CowStr::from(format!(
                    "<sup class=\"footnote-reference\"><a href=\"{href}\">{n}</a></sup>"
                ))));
            }
            Event::Start(Tag::FootnoteDefinition(label)) if target == Target::Email => {
                let n = footnote_number(&mut footnotes, &label);
                // The parser's writer closes this <div> at the definition's end; the number
                // goes into the note's first paragraph (see `note_label`), not above it.
                out.push(Event::Html(CowStr::from(format!(
                    "<div class=\"footnote-definition\" id=\"fn-{n}\">"
                ))));
                note_label = Some(n);
            }
            Event::Start(Tag::FootnoteDefinition(label)) if target == Target::Html => {
                let n = footnote_number(&mut footnotes, &label);
                // The parser's writer closes this <div> at the definition's end.
                out.push(Event::Html(CowStr::from(format!(
                    "<div class=\"footnote-definition\" id=\"fn-{n}\"><sup class=\"footnote-definition-label\">{n}</sup>"
                ))));
            }
            Event::InlineHtml(h) => out.push(Event::InlineHtml(absolute_html(h, place))),
            Event::TaskListMarker(done) if target == Target::Email => {
                // One marker: the item's bullet gives way to the box (`to_email_html` styles
                // the class).
                if let Some(item) = all
                    .iter()
                    .rposition(|e| matches!(e, Event::Start(Tag::Item)))
                {
                    all[item] = Event::Html(CowStr::from(format!("<li class=\"{TASK_CLASS}\">")));
                }
                out.push(Event::Text(CowStr::from(if done {
                    "☑ "
                } else {
                    "☐ "
                })));
            }
            Event::TaskListMarker(done) if target == Target::Html => {
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
        for event in out.drain(..) {
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

/// The body as an HTML fragment with absolute URLs; raw HTML in it is sanitised.
pub fn to_html(body: &str, place: Place<'_>) -> String {
    write_html(events(body, place, Target::Html, None))
}

/// Writes events as HTML. When the body carried raw HTML, the result goes through the HTML
/// sanitiser (ammonia) with a generous allow-list: tables, figures, details, images, audio
/// and video stay; scripts, event handlers, `javascript:` URLs (however encoded), `<meta>`,
/// `<base>`, forms and frames go. Bodies of plain Markdown, which cannot carry any of that,
/// are written as they are.
fn write_html(events: Vec<Event<'_>>) -> String {
    let raw = events
        .iter()
        .any(|e| matches!(e, Event::Html(_) | Event::InlineHtml(_)));
    let mut out = String::new();
    if raw && raw_html_depth(&events) > MAX_RAW_HTML_DEPTH {
        // HTML parsers and the CSS inliner slow down or overflow on thousands of nested
        // tags: such raw HTML is dropped whole (`check` warns), the Markdown stays.
        html::push_html(
            &mut out,
            events
                .into_iter()
                .filter(|e| !matches!(e, Event::Html(_) | Event::InlineHtml(_))),
        );
        return out;
    }
    html::push_html(&mut out, events.into_iter());
    if raw { sanitise(&out) } else { out }
}

/// How deeply raw HTML may nest its tags before gazette drops it.
pub const MAX_RAW_HTML_DEPTH: usize = 256;

/// The deepest nesting of the raw HTML's tags, counted roughly (opening tags up, closing
/// tags down, void and self-closed tags ignored): enough to tell a page from an attack.
fn raw_html_depth(events: &[Event<'_>]) -> usize {
    const VOID: [&str; 14] = [
        "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr", "param",
    ];
    let (mut depth, mut deepest) = (0usize, 0usize);
    for event in events {
        let (Event::Html(h) | Event::InlineHtml(h)) = event else {
            continue;
        };
        let mut rest: &str = h;
        while let Some(i) = rest.find('<') {
            rest = &rest[i + 1..];
            let end = rest.find('>').unwrap_or(rest.len());
            let tag = &rest[..end];
            if tag.starts_with('/') {
                depth = depth.saturating_sub(1);
            } else if tag.starts_with(|c: char| c.is_ascii_alphabetic()) && !tag.ends_with('/') {
                let name: String = tag
                    .chars()
                    .take_while(char::is_ascii_alphanumeric)
                    .flat_map(|c| c.to_lowercase())
                    .collect();
                if !VOID.contains(&name.as_str()) {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
            }
        }
    }
    deepest
}

/// Whether a body's raw HTML nests deeper than gazette renders, for `check`.
pub fn raw_html_too_deep(body: &str) -> bool {
    let events: Vec<Event<'_>> = Flattened::new(body).map(|(e, _)| e).collect();
    raw_html_depth(&events) > MAX_RAW_HTML_DEPTH
}

/// An HTML fragment with everything that could run script or leave the page removed.
pub fn sanitise(html: &str) -> String {
    use std::sync::LazyLock;
    static CLEANER: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
        let mut b = ammonia::Builder::default();
        b.add_tags(["video", "audio", "source", "track", "picture", "section"])
            .add_generic_attributes(["class", "id", "align", "dir"])
            .add_tag_attributes("img", ["width", "height", "loading", "srcset", "sizes"])
            .add_tag_attributes(
                "video",
                [
                    "src", "poster", "controls", "width", "height", "loop", "muted",
                ],
            )
            .add_tag_attributes("audio", ["src", "controls", "loop"])
            .add_tag_attributes("source", ["src", "srcset", "type", "media"])
            .add_tag_attributes("track", ["src", "kind", "srclang", "label"])
            .add_tag_attributes("th", ["style"])
            .add_tag_attributes("td", ["style"])
            .add_tag_attributes("ol", ["start"])
            .filter_style_properties(["text-align"].into_iter().collect())
            .url_schemes(
                [
                    "http", "https", "mailto", "tel", "sms", "ftp", "ftps", "sftp", "news", "irc",
                    "ircs", "xmpp", "geo", "webcal",
                ]
                .into_iter()
                .collect(),
            )
            .link_rel(None)
            // Browsers drop tabs and newlines inside a URL, so `jav&#x09;ascript:` is a script
            // URL that no scheme check sees: a URL that reads as one without them goes.
            .attribute_filter(|_, attribute, value| {
                let url = matches!(attribute, "href" | "src" | "poster" | "srcset" | "cite");
                let squeezed: String = value
                    .chars()
                    .filter(|c| !c.is_whitespace() && !c.is_control())
                    .flat_map(char::to_lowercase)
                    .collect();
                if url && (squeezed.contains("javascript:") || squeezed.contains("vbscript:")) {
                    None
                } else {
                    Some(value.into())
                }
            });
        b
    });
    CLEANER.clean(html).to_string()
}

/// Plain text of the first paragraph, cut to about `max_chars` characters: the summary used
/// when the front matter gives none.
pub fn first_paragraph_text(body: &str, max_chars: usize) -> String {
    let mut first = FirstParagraph::default();
    for event in parse(body) {
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
    let events = events(body, place, Target::Html, Some(&mut first));
    (write_html(events), first.into_summary(max_chars))
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
    for (event, range) in Flattened::new(body) {
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
    const TAGS: [&str; 12] = [
        "script", "form", "iframe", "svg", "object", "embed", "input", "meta", "base", "style",
        "link", "frame",
    ];
    let mut found = Vec::new();
    for (event, range) in Flattened::new(body) {
        if let Event::Html(h) | Event::InlineHtml(h) = event {
            let lower = h.to_ascii_lowercase();
            for tag in TAGS {
                let open = format!("<{tag}");
                let at_tag = lower.match_indices(&open).any(|(i, _)| {
                    lower[i + open.len()..]
                        .chars()
                        .next()
                        .is_none_or(|c| c.is_whitespace() || c == '>' || c == '/')
                });
                if at_tag {
                    found.push((format!("<{tag}>"), range.clone()));
                }
            }
            // What the sanitiser removes from tags it keeps: event handlers and script URLs,
            // with the tabs, newlines and entities browsers ignore inside a scheme.
            let squeezed: String = lower
                .replace("&#x09;", "")
                .replace("&#9;", "")
                .replace("&#x0a;", "")
                .replace("&#10;", "")
                .replace("&tab;", "")
                .replace("&newline;", "")
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            if squeezed.contains("javascript:") || squeezed.contains("vbscript:") {
                found.push(("a `javascript:` URL".to_string(), range.clone()));
            }
            let handler = lower.match_indices(" on").any(|(i, _)| {
                let rest = &lower[i + 3..];
                let name_len = rest.chars().take_while(char::is_ascii_lowercase).count();
                name_len > 0 && rest[name_len..].trim_start().starts_with('=')
            });
            if handler {
                found.push(("an event handler (on...=)".to_string(), range.clone()));
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
    for (event, range) in Flattened::new(body) {
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

/// Raw HTML tags that never reach an email: clients strip them, and a newsletter has no use
/// for them.
const EMAIL_UNSAFE_TAGS: [&str; 7] = [
    "script", "form", "iframe", "svg", "object", "embed", "input",
];

/// Whether [`to_email_html`] may differ from [`to_html`] for this body: a quick look for the
/// tags it drops, footnotes and task lists, so that a caller holding [`to_html`]'s output can
/// reuse it.
pub fn may_hold_unsafe_html(body: &str) -> bool {
    if body.contains("[^") || body.contains("[ ]") || body.contains("[x]") || body.contains("[X]") {
        return true;
    }
    if !body.contains('<') {
        return false;
    }
    let lower = body.to_ascii_lowercase();
    EMAIL_UNSAFE_TAGS
        .iter()
        .any(|tag| lower.contains(&format!("<{tag}")))
}

/// The class of a task-list item in email, which shows its box instead of a bullet.
const TASK_CLASS: &str = "task-list-item";

/// The body as an HTML fragment for email: like [`to_html`], but raw HTML that holds a
/// script, form, frame, SVG, object, embed or input is dropped (`check` warns about it);
/// footnotes are gathered at the end, small, under a rule, each number in its note's text;
/// a task-list item shows its box and no bullet.
pub fn to_email_html(body: &str, place: Place<'_>) -> String {
    let mut kept = Vec::new();
    let mut notes = Vec::new();
    let mut in_note = false;
    for event in events(body, place, Target::Email, None) {
        if let Event::Html(h) | Event::InlineHtml(h) = &event {
            if h.starts_with("<div class=\"footnote-definition\"") {
                in_note = true;
            } else {
                let lower = h.to_ascii_lowercase();
                if EMAIL_UNSAFE_TAGS
                    .iter()
                    .any(|tag| lower.contains(&format!("<{tag}")))
                {
                    continue;
                }
            }
        }
        let closes_note = matches!(event, Event::End(TagEnd::FootnoteDefinition));
        if in_note {
            notes.push(event);
        } else {
            kept.push(event);
        }
        in_note &= !closes_note;
    }
    if !notes.is_empty() {
        kept.push(Event::Html(CowStr::from("<hr class=\"footnotes\">\n")));
        kept.extend(notes);
    }
    // The sanitiser keeps no `style`; these are set after it, on gazette's own markup, so an
    // editor's older `email.css` without the rules still gets them.
    write_html(kept)
        .replace(
            &format!("<li class=\"{TASK_CLASS}\">"),
            &format!("<li class=\"{TASK_CLASS}\" style=\"list-style-type: none;\">"),
        )
        .replace(
            "<div class=\"footnote-definition\" ",
            "<div class=\"footnote-definition\" style=\"font-size: 13px; line-height: 1.6;\" ",
        )
}

/// The plain-text rendering of a body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text {
    /// The text, wrapped, each line ending with `\n`, then the numbered list of links.
    pub text: String,
    /// The number the next link would get: a later text (the footer) continues from here.
    pub next_reference: usize,
}

/// The body as plain text wrapped at `width` display columns (a CJK character counts two):
/// headings underlined, lists with hanging indents, quotes behind `> `, code indented and
/// never wrapped, tables as aligned columns (or one block per row when too wide), links as
/// numbered references `[n]` listed under the text starting at `first_reference`. A link
/// whose text is its address stays inline. URLs are never broken across lines; link text and
/// inline code are not either when they fit on a line. Footnotes take the next number too
/// (`[n]` in the text) and are written as notes under a short rule after the text, before the
/// links; task-list items show `[ ]`/`[x]` instead of a bullet; struck-out text reads
/// `[struck out: …]` (in Chinese `[删去：…]`).
pub fn to_text(body: &str, place: Place<'_>, width: usize, first_reference: usize) -> Text {
    to_text_in(body, place, width, first_reference, "en")
}

/// [`to_text`] with gazette's own words (the strikethrough marker) in `language`.
pub fn to_text_in(
    body: &str,
    place: Place<'_>,
    width: usize,
    first_reference: usize,
    language: &str,
) -> Text {
    let mut w = TextWriter::new(width, first_reference);
    w.struck = crate::i18n::strings(language).struck();
    for event in events(body, place, Target::Text, None) {
        w.event(event);
    }
    w.finish()
}

/// Wraps one paragraph at `width` display columns with textwrap's Unicode line breaking
/// (UAX #14): breaks between CJK characters but never before closing punctuation such as
/// `，。、」》）`, never inside a URL, never inside a word. Words and URLs longer than the
/// width stay whole on a line of their own.
pub fn wrap(text: &str, width: usize, first_indent: &str, rest_indent: &str) -> Vec<String> {
    let indent = display_width(first_indent).max(display_width(rest_indent));
    let text = &keep_fitting_spans(text, width.saturating_sub(indent));
    if !text.contains('\n')
        && display_width(first_indent) + display_width(&strip_keep(text)) <= width
    {
        return vec![
            strip_keep(&format!("{first_indent}{text}"))
                .trim_end()
                .to_string(),
        ];
    }
    let options = textwrap::Options::new(width.max(1))
        .initial_indent(first_indent)
        .subsequent_indent(rest_indent)
        .break_words(false)
        .word_separator(textwrap::WordSeparator::Custom(words_keeping_urls))
        .word_splitter(textwrap::WordSplitter::NoHyphenation)
        .wrap_algorithm(textwrap::WrapAlgorithm::FirstFit);
    textwrap::wrap(text, options)
        .into_iter()
        .map(|line| strip_keep(&line).trim_end().to_string())
        .collect()
}

/// Opens and closes a span of text kept on one line (a link's text with its `[n]`, inline
/// code). ANSI escapes, which textwrap measures as zero columns and ignores when it looks for
/// line breaks; the editor's own escape characters are removed from the text before.
const KEEP_OPEN: &str = "\u{1b}[1m";
const KEEP_CLOSE: &str = "\u{1b}[0m";

/// `text` without the keep-together marks.
fn strip_keep(text: &str) -> String {
    text.replace(KEEP_OPEN, "").replace(KEEP_CLOSE, "")
}

/// `text` with the marks of kept spans removed where the span would not fit in `available`
/// columns or holds a line break (or the marks do not pair up): such a span wraps as usual.
fn keep_fitting_spans(text: &str, available: usize) -> String {
    if !text.contains('\u{1b}') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find(KEEP_OPEN) {
        out.push_str(&strip_keep(&rest[..open]));
        // The outermost span: up to the close that brings the depth back to zero.
        let mut depth = 0usize;
        let mut end = None;
        let mut i = open;
        while i < rest.len() {
            if rest[i..].starts_with(KEEP_OPEN) {
                depth += 1;
                i += KEEP_OPEN.len();
            } else if rest[i..].starts_with(KEEP_CLOSE) {
                depth -= 1;
                i += KEEP_CLOSE.len();
                if depth == 0 {
                    end = Some(i);
                    break;
                }
            } else {
                i += rest[i..].chars().next().map_or(1, char::len_utf8);
            }
        }
        let Some(end) = end else {
            out.push_str(&strip_keep(&rest[open..]));
            return out;
        };
        let inner = strip_keep(&rest[open..end]);
        if inner.contains('\n') || display_width(&inner) > available {
            out.push_str(&inner);
        } else {
            out.push_str(KEEP_OPEN);
            out.push_str(&inner);
            out.push_str(KEEP_CLOSE);
        }
        rest = &rest[end..];
    }
    out.push_str(&strip_keep(rest));
    out
}

/// Whether `word` starts with a reference such as `[12]`, which stays with the word before.
fn starts_with_reference(word: &str) -> bool {
    let word = word.trim_start_matches(KEEP_CLOSE);
    let Some(rest) = word.strip_prefix('[') else {
        return false;
    };
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    digits > 0 && rest[digits..].starts_with(']')
}

/// textwrap's Unicode line-break words, with the breaks inside URLs removed (UAX #14 allows a
/// break after `/`, which would cut a link in two).
fn words_keeping_urls(line: &str) -> Box<dyn Iterator<Item = textwrap::core::Word<'_>> + '_> {
    let words = textwrap::WordSeparator::UnicodeBreakProperties.find_words(line);
    if !line.contains("://") && !line.contains('\u{1b}') && !line.contains('[') {
        return words;
    }
    let mut finder = linkify::LinkFinder::new();
    finder.kinds(&[linkify::LinkKind::Url]);
    // A URL in an email's text is ASCII (links are serialised that way); linkify would also
    // take the CJK text that follows one.
    let urls: Vec<Range<usize>> = finder
        .spans(line)
        .filter(|s| s.kind().is_some())
        .map(|s| {
            let ascii = s
                .as_str()
                .find(|c: char| !c.is_ascii())
                .unwrap_or(s.as_str().len());
            s.start()..s.start() + ascii
        })
        .collect();
    let words: Vec<textwrap::core::Word<'_>> = words.collect();
    let base = line.as_ptr() as usize;
    let mut out = Vec::new();
    let mut start = 0;
    // How many kept spans are open after the word just read.
    let mut depth = 0usize;
    for (i, word) in words.iter().enumerate() {
        let end = word.whitespace.as_ptr() as usize - base + word.whitespace.len();
        depth = (depth + word.word.matches(KEEP_OPEN).count())
            .saturating_sub(word.word.matches(KEEP_CLOSE).count());
        let next = words.get(i + 1).map_or("", |w| w.word);
        // The next word may begin by closing the span the break would cut.
        let leading_closes =
            (next.len() - next.trim_start_matches(KEEP_CLOSE).len()) / KEEP_CLOSE.len();
        let in_span = depth.saturating_sub(leading_closes) > 0;
        if urls.iter().any(|u| u.start < end && end < u.end)
            || (i + 1 < words.len() && (in_span || starts_with_reference(next)))
        {
            continue;
        }
        out.push(textwrap::core::Word::from(&line[start..end]));
        start = end;
    }
    if start < line.len() {
        out.push(textwrap::core::Word::from(&line[start..]));
    }
    Box::new(out.into_iter())
}

/// The display width of a string: CJK characters count two columns.
pub fn display_width(s: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(s)
}

fn is_wide(c: char) -> bool {
    unicode_width::UnicodeWidthChar::width(c) == Some(2)
}

/// Marks a soft line break inside a paragraph until it is known whether it joins CJK text
/// (no space) or words (a space).
const SOFT_BREAK: char = '\u{0}';

/// The rule above the footnotes of a text.
const NOTES_RULE: &str = "----------";

enum Container {
    Quote,
    /// A list item, or a footnote's note (marker `[n] `). `task` is the box that stands in
    /// for a bullet in a task list.
    Item {
        marker: String,
        used: bool,
        task: Option<&'static str>,
    },
}

struct Table {
    rows: Vec<Vec<String>>,
    header_rows: usize,
}

struct TextWriter {
    width: usize,
    out: String,
    /// The inline text of the block being read.
    inline: String,
    containers: Vec<Container>,
    /// Links as (number, destination); a destination seen before keeps its number.
    references: Vec<(usize, String)>,
    next_reference: usize,
    /// Where each open link's text starts in `inline`, and its destination.
    links: Vec<(usize, String)>,
    /// An open image: where its alt text starts and its source.
    image: Option<(usize, String)>,
    heading: Option<HeadingLevel>,
    code: Option<String>,
    table: Option<Table>,
    blank_before_next: bool,
    /// Inside a Markdown paragraph (the text of a tight list item is not in one).
    paragraph: bool,
    /// Inside a footnote's definition: its number, and the text, containers and spacing of
    /// the body around it, put back at its end.
    footnote: Option<(usize, String, Vec<Container>, bool)>,
    /// Footnote labels and their numbers, taken from the same count as links.
    footnote_numbers: HashMap<String, usize>,
    /// Each footnote's note, written, with its number.
    notes: Vec<(usize, String)>,
    /// What stands before and after struck-out text.
    struck: (&'static str, &'static str),
}

impl TextWriter {
    fn new(width: usize, first_reference: usize) -> TextWriter {
        TextWriter {
            width,
            out: String::new(),
            inline: String::new(),
            containers: Vec::new(),
            references: Vec::new(),
            next_reference: first_reference,
            links: Vec::new(),
            image: None,
            heading: None,
            code: None,
            table: None,
            blank_before_next: false,
            paragraph: false,
            footnote: None,
            footnote_numbers: HashMap::new(),
            notes: Vec::new(),
            struck: ("[struck out: ", "]"),
        }
    }

    /// The number of footnote `label`: the next reference number when first seen.
    fn footnote_number(&mut self, label: &str) -> usize {
        if let Some(n) = self.footnote_numbers.get(label) {
            return *n;
        }
        let n = self.next_reference;
        self.next_reference += 1;
        self.footnote_numbers.insert(label.to_string(), n);
        n
    }

    /// Text as the writer keeps it: without escape characters, which mark kept spans.
    fn push_text(&mut self, text: &str) {
        if text.contains('\u{1b}') {
            self.inline.push_str(&text.replace('\u{1b}', ""));
        } else {
            self.inline.push_str(text);
        }
    }

    fn prefixes(&mut self) -> (String, String) {
        let mut first = String::new();
        let mut rest = String::new();
        for c in &mut self.containers {
            match c {
                Container::Quote => {
                    first.push_str("> ");
                    rest.push_str("> ");
                }
                Container::Item { marker, used, task } => {
                    let marker = task.unwrap_or(marker.as_str());
                    let pad = " ".repeat(display_width(marker));
                    if *used {
                        first.push_str(&pad);
                    } else {
                        first.push_str(marker);
                        *used = true;
                    }
                    rest.push_str(&pad);
                }
            }
        }
        (first, rest)
    }

    fn quote_prefix(&self) -> String {
        let mut p = String::new();
        for c in &self.containers {
            match c {
                Container::Quote => p.push('>'),
                Container::Item { .. } => {}
            }
        }
        p
    }

    fn start_block(&mut self) {
        if self.blank_before_next && !self.out.is_empty() {
            let q = self.quote_prefix();
            self.out.push_str(&q);
            self.out.push('\n');
        }
        self.blank_before_next = false;
    }

    /// The inline text gathered so far, with soft breaks resolved, emptied.
    fn take_inline(&mut self) -> String {
        let raw = std::mem::take(&mut self.inline);
        let chars: Vec<char> = raw.chars().collect();
        let mut text = String::with_capacity(raw.len());
        // The last character before a run of soft breaks (looking back for it each time made
        // a run of many breaks quadratic).
        // Keep-together marks (`\u{1b}[…m`) are not characters of the text: looked past.
        let mut before: Option<char> = None;
        let mut in_mark = false;
        for (i, &c) in chars.iter().enumerate() {
            if in_mark || c == '\u{1b}' {
                text.push(c);
                in_mark = c != 'm';
            } else if c == SOFT_BREAK {
                let mut j = i + 1;
                while chars.get(j) == Some(&'\u{1b}') {
                    j += chars[j..]
                        .iter()
                        .position(|&c| c == 'm')
                        .map_or(1, |p| p + 1);
                }
                let after = chars.get(j);
                let joins_cjk = before.is_some_and(is_wide) || after.is_some_and(|c| is_wide(*c));
                if !joins_cjk {
                    text.push(' ');
                }
            } else {
                text.push(c);
                before = Some(c);
            }
        }
        text
    }

    fn flush_paragraph(&mut self) {
        let text = self.take_inline();
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        self.start_block();
        let (first, rest) = self.prefixes();
        let width = self.width;
        for line in wrap(text, width, &first, &rest) {
            self.out.push_str(&line);
            self.out.push('\n');
        }
        // A tight list item's text runs straight into what follows (a nested list).
        self.blank_before_next = self.paragraph || self.containers.is_empty();
    }

    fn reference(&mut self, dest: &str) -> usize {
        if let Some((n, _)) = self.references.iter().find(|(_, d)| d == dest) {
            return *n;
        }
        let n = self.next_reference;
        self.next_reference += 1;
        self.references.push((n, dest.to_string()));
        n
    }

    fn event(&mut self, event: Event<'_>) {
        if let Some(code) = self.code.as_mut() {
            match event {
                Event::Text(t) => code.push_str(&t),
                Event::End(TagEnd::CodeBlock) => {
                    let code = self.code.take().unwrap_or_default();
                    self.start_block();
                    let (_, rest) = self.prefixes();
                    for line in code.trim_end_matches('\n').split('\n') {
                        let line = format!("{rest}    {line}");
                        self.out.push_str(line.trim_end());
                        self.out.push('\n');
                    }
                    self.blank_before_next = true;
                }
                _ => {}
            }
            return;
        }
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(t) => self.push_text(&t),
            Event::Code(t) => {
                self.inline.push_str(KEEP_OPEN);
                self.inline.push('`');
                self.push_text(&t);
                self.inline.push('`');
                self.inline.push_str(KEEP_CLOSE);
            }
            Event::SoftBreak => self.inline.push(SOFT_BREAK),
            Event::HardBreak => self.inline.push('\n'),
            Event::Rule => {
                self.flush_paragraph();
                self.start_block();
                let (first, _) = self.prefixes();
                self.out.push_str(&first);
                self.out.push_str("* * *\n");
                self.blank_before_next = true;
            }
            Event::FootnoteReference(label) => {
                let n = self.footnote_number(&label);
                self.inline.push_str(&format!("[{n}]"));
            }
            Event::TaskListMarker(done) => {
                let text = if done { "[x] " } else { "[ ] " };
                // In a bulleted list the box replaces the bullet; a numbered item keeps its
                // number and shows the box after it.
                match self.containers.last_mut() {
                    Some(Container::Item {
                        marker,
                        used: false,
                        task,
                    }) if marker == "- " => *task = Some(text),
                    _ => self.inline.push_str(text),
                }
            }
            Event::InlineMath(t) | Event::DisplayMath(t) => self.inline.push_str(&t),
            Event::Html(_) | Event::InlineHtml(_) => {}
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Paragraph => self.paragraph = true,
            Tag::Heading { level, .. } => {
                self.flush_paragraph();
                self.heading = Some(level);
            }
            Tag::BlockQuote(_) => {
                self.flush_paragraph();
                // The blank line before a quote belongs to the outside.
                self.start_block();
                self.containers.push(Container::Quote);
            }
            Tag::CodeBlock(_) => {
                self.flush_paragraph();
                self.code = Some(String::new());
            }
            Tag::List(start) => {
                self.flush_paragraph();
                self.containers.push(Container::Item {
                    marker: match start {
                        Some(n) => format!("{n}. "),
                        None => "- ".to_string(),
                    },
                    used: true,
                    task: None,
                });
            }
            Tag::Item => {
                self.flush_paragraph();
                if let Some(Container::Item { used, task, .. }) = self.containers.last_mut() {
                    *used = false;
                    *task = None;
                }
            }
            Tag::FootnoteDefinition(label) => {
                self.flush_paragraph();
                let n = self.footnote_number(&label);
                // A note is written apart and put under the text at the end.
                let out = std::mem::take(&mut self.out);
                let containers = std::mem::replace(
                    &mut self.containers,
                    vec![Container::Item {
                        marker: format!("[{n}] "),
                        used: false,
                        task: None,
                    }],
                );
                let blank = std::mem::replace(&mut self.blank_before_next, false);
                self.footnote = Some((n, out, containers, blank));
            }
            Tag::Table(_) => {
                self.flush_paragraph();
                self.table = Some(Table {
                    rows: Vec::new(),
                    header_rows: 0,
                });
            }
            Tag::TableHead | Tag::TableRow => {
                if let Some(t) = self.table.as_mut() {
                    t.rows.push(Vec::new());
                }
            }
            Tag::TableCell => {
                self.take_inline();
            }
            Tag::Link { dest_url, .. } => {
                self.links.push((self.inline.len(), dest_url.to_string()));
            }
            Tag::Image { dest_url, .. } => {
                self.image = Some((self.inline.len(), dest_url.to_string()));
            }
            Tag::Emphasis
            | Tag::Strong
            | Tag::HtmlBlock
            | Tag::MetadataBlock(_)
            | Tag::DefinitionList
            | Tag::DefinitionListTitle
            | Tag::DefinitionListDefinition
            | Tag::Superscript
            | Tag::Subscript => {}
            Tag::Strikethrough => self.inline.push_str(self.struck.0),
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Paragraph => {
                self.flush_paragraph();
                self.paragraph = false;
            }
            TagEnd::Heading(level) => {
                self.heading = None;
                let text = self.take_inline();
                let text = text.trim();
                if text.is_empty() {
                    return;
                }
                self.start_block();
                let (first, rest) = self.prefixes();
                let underline = match level {
                    HeadingLevel::H1 => Some('='),
                    HeadingLevel::H2 => Some('-'),
                    _ => None,
                };
                let text = match underline {
                    Some(_) => text.to_string(),
                    None => format!("{} {text}", "#".repeat(level as usize)),
                };
                let lines = wrap(&text, self.width, &first, &rest);
                let widest = lines
                    .iter()
                    .map(|l| display_width(l) - display_width(&rest).min(display_width(l)))
                    .max()
                    .unwrap_or(0)
                    .min(self.width);
                for line in &lines {
                    self.out.push_str(line);
                    self.out.push('\n');
                }
                if let Some(c) = underline {
                    self.out.push_str(&rest);
                    self.out.extend(std::iter::repeat_n(c, widest.max(3)));
                    self.out.push('\n');
                }
                self.blank_before_next = true;
            }
            TagEnd::BlockQuote(_) => {
                self.flush_paragraph();
                self.containers.pop();
                self.blank_before_next = true;
            }
            TagEnd::List(_) => {
                self.flush_paragraph();
                self.containers.pop();
                self.blank_before_next = true;
            }
            TagEnd::Item => {
                self.flush_paragraph();
                // Items of a tight list follow each other without a blank line.
                self.blank_before_next = false;
                if let Some(Container::Item {
                    marker, used, task, ..
                }) = self.containers.last_mut()
                {
                    *used = true;
                    *task = None;
                    if let Some(n) = marker
                        .strip_suffix(". ")
                        .and_then(|n| n.parse::<u64>().ok())
                    {
                        *marker = format!("{}. ", n + 1);
                    }
                }
            }
            TagEnd::FootnoteDefinition => {
                self.flush_paragraph();
                if let Some((n, out, containers, blank)) = self.footnote.take() {
                    let note = std::mem::replace(&mut self.out, out);
                    self.containers = containers;
                    self.blank_before_next = blank;
                    self.notes.push((n, note));
                }
            }
            TagEnd::TableCell => {
                let cell = strip_keep(self.take_inline().trim());
                if let Some(row) = self.table.as_mut().and_then(|t| t.rows.last_mut()) {
                    row.push(cell);
                }
            }
            TagEnd::TableHead => {
                if let Some(t) = self.table.as_mut() {
                    t.header_rows = t.rows.len();
                }
            }
            TagEnd::TableRow => {}
            TagEnd::Table => {
                if let Some(table) = self.table.take() {
                    self.write_table(table);
                }
            }
            TagEnd::Link => {
                let Some((start, dest)) = self.links.pop() else {
                    return;
                };
                let text = self.inline[start..].trim().to_string();
                let inline_address = text == dest
                    || dest.strip_prefix("mailto:") == Some(text.as_str())
                    || dest.strip_suffix('/') == Some(text.as_str());
                if text.is_empty() {
                    self.inline.push_str(&dest);
                } else if !inline_address {
                    let n = self.reference(&dest);
                    // The link's text and its number stay on one line.
                    self.inline.insert_str(start, KEEP_OPEN);
                    self.inline.push_str(&format!("[{n}]{KEEP_CLOSE}"));
                }
            }
            TagEnd::Image => {
                let Some((start, dest)) = self.image.take() else {
                    return;
                };
                let alt = self.inline.split_off(start);
                let n = self.reference(&dest);
                self.inline.push_str(&format!(
                    "{KEEP_OPEN}[{}][{n}]{KEEP_CLOSE}",
                    alt.trim().replace(SOFT_BREAK, " ")
                ));
            }
            TagEnd::Strikethrough => self.inline.push_str(self.struck.1),
            _ => {}
        }
    }

    fn write_table(&mut self, table: Table) {
        let columns = table.rows.iter().map(Vec::len).max().unwrap_or(0);
        if columns == 0 {
            return;
        }
        let mut widths = vec![0; columns];
        for row in &table.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(display_width(cell));
            }
        }
        self.start_block();
        let (_, rest) = self.prefixes();
        let total = widths.iter().sum::<usize>() + 3 * (columns - 1) + display_width(&rest);
        if total <= self.width {
            for (r, row) in table.rows.iter().enumerate() {
                let mut line = rest.clone();
                for (i, width) in widths.iter().enumerate() {
                    let cell = row.get(i).map_or("", String::as_str);
                    if i > 0 {
                        line.push_str(" | ");
                    }
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', width - display_width(cell)));
                }
                self.out.push_str(line.trim_end());
                self.out.push('\n');
                if r + 1 == table.header_rows {
                    let mut rule = rest.clone();
                    for (i, width) in widths.iter().enumerate() {
                        if i > 0 {
                            rule.push_str("-+-");
                        }
                        rule.extend(std::iter::repeat_n('-', *width));
                    }
                    self.out.push_str(&rule);
                    self.out.push('\n');
                }
            }
        } else {
            // Too wide for aligned columns: one block per row, "header: value" per line.
            let header: Vec<String> = table
                .rows
                .get(..table.header_rows)
                .and_then(|h| h.first().cloned())
                .unwrap_or_default();
            for (r, row) in table.rows.iter().enumerate().skip(table.header_rows) {
                if r > table.header_rows {
                    self.out.push_str(&self.quote_prefix());
                    self.out.push('\n');
                }
                for (i, cell) in row.iter().enumerate() {
                    let label = header.get(i).map_or(String::new(), |h| format!("{h}: "));
                    let first = format!("{rest}{}{label}", if i == 0 { "- " } else { "  " });
                    let indent = format!("{rest}    ");
                    for line in wrap(cell, self.width, &first, &indent) {
                        self.out.push_str(&line);
                        self.out.push('\n');
                    }
                }
            }
        }
        self.blank_before_next = true;
    }

    fn finish(mut self) -> Text {
        self.flush_paragraph();
        if !self.notes.is_empty() {
            self.notes.sort_by_key(|(n, _)| *n);
            if !self.out.is_empty() {
                self.out.push('\n');
            }
            self.out.push_str(NOTES_RULE);
            self.out.push('\n');
            for (n, note) in std::mem::take(&mut self.notes) {
                if note.trim().is_empty() {
                    self.out.push_str(&format!("[{n}]\n"));
                } else {
                    self.out.push_str(&note);
                }
            }
        }
        if !self.references.is_empty() {
            self.out.push('\n');
            for (n, dest) in &self.references {
                self.out.push_str(&format!("[{n}] {dest}\n"));
            }
        }
        Text {
            text: self.out,
            next_reference: self.next_reference,
        }
    }
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
            "- [x] 任务\n\n- [ ] 松散的\n\n脚注[^a] 与 <b>粗</b>\n\n[^a]: 注\n",
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
        // Raw HTML goes through the sanitiser, which writes every attribute in one form.
        assert!(
            html.contains(r#"<a href="https://d.example.org/papers/april/#top">b</a>"#),
            "{html}"
        );
        assert!(
            html.contains(r#"<a href="https://d.example.org/papers/fig.png">c</a>"#),
            "{html}"
        );
        assert!(html.contains(r#"<a href="https://x.org">d</a>"#), "{html}");
        assert!(
            html.contains(r#"src="https://d.example.org/papers/y.png""#),
            "{html}"
        );
    }

    #[test]
    fn cjk_wraps_between_characters_but_never_before_closing_punctuation() {
        let closing = "，。、」》）：；！？";
        let text = "「渐进蒸馏」已经能把扩散模型蒸馏到四步左右，而本文既可以蒸馏、也可以把一致性模型作为独立的生成模型从头训练。用 GPT-2 生成《超级马里奥兄弟》的关卡（PCG）！真的吗？是的。";
        for width in 10..=72 {
            let lines = wrap(text, width, "", "");
            for line in &lines {
                assert!(display_width(line) <= width, "{width}: {line}");
                assert!(
                    !line.starts_with(|c| closing.contains(c)),
                    "{width}: a line starts with closing punctuation: {line}"
                );
            }
            // Breaks between CJK characters add no spaces and lose nothing.
            assert_eq!(
                lines.concat().replace(' ', ""),
                text.replace(' ', ""),
                "{width}"
            );
        }
        // Lines really break between CJK characters, not only at spaces.
        assert!(wrap(text, 20, "", "").len() > 6);
    }

    #[test]
    fn urls_are_never_broken_across_lines() {
        let url = "https://example.org/a/very/long/path/that-exceeds/the/width_of/the/line";
        let text = format!("论文：{url}，社区实现：另一个链接。more words after it");
        for width in [20, 40, 72] {
            let lines = wrap(&text, width, "", "");
            assert!(lines.iter().any(|l| l.contains(url)), "{width}: {lines:#?}");
            assert!(!lines.iter().any(|l| l.starts_with('，')), "{lines:#?}");
        }
    }

    #[test]
    fn plain_text_keeps_structure_readable() {
        let (base, page) = place();
        let p = Place {
            base_url: &base,
            page_url: &page,
        };
        let body = "# 标题\n\n中文\n继续，word\nnext [链接](x.md) <https://a.example/b>\n\n> 引用一\n> 引用二\n\n- 一\n- 二\n  1. 甲\n\n```\nfn main() {}\n```\n\n| a | bb |\n|---|----|\n| 1 | 2 |\n\n![图一](i.png)\n";
        let t = to_text(body, p, 72, 1);
        let expected = "标题\n====\n\n中文继续，word next 链接[1] https://a.example/b\n\n> 引用一引用二\n\n- 一\n- 二\n  1. 甲\n\n    fn main() {}\n\na | bb\n--+---\n1 | 2\n\n[图一][2]\n\n[1] https://d.example.org/papers/x/\n[2] https://d.example.org/papers/i.png\n";
        assert_eq!(t.text, expected, "{}", t.text);
        assert_eq!(t.next_reference, 3);
        // A second text continues the numbering; a link seen twice keeps its number.
        let t = to_text("[a](https://x.example/) [b](https://x.example/)", p, 72, 7);
        assert_eq!(t.text, "a[7] b[7]\n\n[7] https://x.example/\n");
    }

    #[test]
    fn email_html_drops_scripts_and_forms() {
        let (base, page) = place();
        let p = Place {
            base_url: &base,
            page_url: &page,
        };
        let html = to_email_html(
            "a <script>x()</script> b\n\n<form><input></form>\n\n<b>ok</b>",
            p,
        );
        assert!(!html.contains("<script") && !html.contains("<form") && !html.contains("<input"));
        assert!(html.contains("<b>ok</b>"), "{html}");
        assert!(may_hold_unsafe_html("x <SCRIPT src=a>"));
        assert!(!may_hold_unsafe_html("a <b>b</b> <https://x.example/>"));
        let plain = "a <b>b</b> <https://x.example/>";
        assert_eq!(to_email_html(plain, p), to_html(plain, p));
    }

    fn text_of(body: &str, width: usize, language: &str) -> String {
        let (base, page) = place();
        let p = Place {
            base_url: &base,
            page_url: &page,
        };
        to_text_in(body, p, width, 1, language).text
    }

    #[test]
    fn footnotes_are_numbered_notes_under_a_rule() {
        let body = "A claim[^a] with [a link](https://x.example/), again[^a] and one\nmore[^b].\n\n[^b]: Short.\n\n[^a]: The note, which is long enough that it has to wrap onto a second line.\n\n    With a second paragraph.\n";
        let text = text_of(body, 40, "en");
        let expected = "A claim[1] with a link[2], again[1] and\none more[3].\n\n----------\n[1] The note, which is long enough that\n    it has to wrap onto a second line.\n\n    With a second paragraph.\n[3] Short.\n\n[2] https://x.example/\n";
        assert_eq!(text, expected, "{text}");
        assert!(!text.contains("[^"), "{text}");
    }

    #[test]
    fn struck_text_and_task_boxes_read_as_plain_text() {
        let body = "~~old~~ new\n\n- [x] done\n- [ ] to do\n  more\n- plain\n\n1. [x] first\n";
        assert_eq!(
            text_of(body, 72, "en"),
            "[struck out: old] new\n\n[x] done\n[ ] to do more\n- plain\n\n1. [x] first\n"
        );
        assert!(text_of(body, 72, "zh-CN").starts_with("[删去：old] new\n"));
        assert!(!text_of(body, 72, "zh-CN").contains("~~"));
    }

    #[test]
    fn link_text_and_inline_code_stay_on_one_line_when_they_fit() {
        let body = "Some words before [the link text](https://x.example/a) and `inline code span` then 中文的句子里有[一个中文链接](https://x.example/b)和更多的中文文字，还有很多很多。";
        for width in 24..=72 {
            let text = text_of(body, width, "en");
            let lines: Vec<&str> = text.lines().collect();
            for kept in ["the link text[1]", "`inline code span`", "一个中文链接[2]"] {
                assert!(
                    lines.iter().any(|l| l.contains(kept)),
                    "{width}: {kept} split:\n{text}"
                );
            }
            for line in &lines {
                assert!(display_width(line) <= width, "{width}: {line}");
            }
            assert!(!text.contains('\u{1b}'), "{text:?}");
        }
        // Longer than a line: wrapped like any text, no line too wide.
        let long = "x [a link whose text is far longer than the narrow width](https://x.example/)";
        let text = text_of(long, 20, "en");
        assert!(
            text.lines()
                .take_while(|l| !l.is_empty())
                .all(|l| display_width(l) <= 20),
            "{text}"
        );
        assert_eq!(
            text.lines().take_while(|l| !l.is_empty()).count(),
            3,
            "{text}"
        );
        // A reference number never starts a line.
        for width in 8..=30 {
            let text = text_of(
                "one two three four.[^n] five six seven 一二三四五六七八九十[^n]一二三。\n\n[^n]: x\n",
                width,
                "en",
            );
            let body = text.split(NOTES_RULE).next().unwrap_or_default();
            assert!(body.contains("four.[1]"), "{width}: {text}");
            assert!(body.contains("十[1]"), "{width}: {text}");
            assert!(
                !body.lines().any(|l| l.starts_with("[1]")),
                "{width}: {text}"
            );
        }
        // The editor's own escape characters never reach the text.
        assert_eq!(
            text_of("a \u{1b}[1mb\u{1b}[0m `c\u{1b}`", 72, "en"),
            "a [1mb[0m `c`\n"
        );
    }

    #[test]
    fn email_footnotes_are_small_under_a_rule_and_task_items_have_one_marker() {
        let (base, page) = place();
        let p = Place {
            base_url: &base,
            page_url: &page,
        };
        let html = to_email_html(
            "Text[^1].\n\n[^1]: The note.\n\nAfter the note.\n\n- [x] done\n- plain\n",
            p,
        );
        let rule = html.find("<hr class=\"footnotes\">").expect(&html);
        let note = html.find("The note.").expect(&html);
        assert!(html.find("After the note.").expect(&html) < rule, "{html}");
        assert!(rule < note, "{html}");
        assert!(
            html.contains("<p><sup class=\"footnote-definition-label\">1</sup> The note.</p>"),
            "{html}"
        );
        assert!(html.contains("style=\"font-size: 13px;"), "{html}");
        assert!(
            html.contains(
                "<li class=\"task-list-item\" style=\"list-style-type: none;\">☑ done</li>"
            ),
            "{html}"
        );
        assert!(html.contains("<li>plain</li>"), "{html}");
        assert!(may_hold_unsafe_html("a[^1]") && may_hold_unsafe_html("- [ ] x"));
    }
}
