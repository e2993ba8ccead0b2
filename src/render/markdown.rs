//! Markdown -> HTML fragment (pages, feeds, email), with links made absolute and raw HTML
//! sanitised; the parse every other reader of a body shares. Pure: no files, no clock.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::ops::Range;

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, TagEnd, html};
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

/// The parser's events with their byte ranges, nesting bounded by [`MAX_NESTING`]: what
/// the renderers see, for the lints that must agree with them.
pub fn ranged_events(body: &str) -> impl Iterator<Item = (Event<'_>, Range<usize>)> {
    Flattened::new(body)
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
pub(super) enum Target {
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
pub(super) fn events<'s>(
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
    // Inside `<mailto:…>`: its text shows the address without the scheme.
    let mut in_mailto_autolink = false;
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
            Event::Text(text) if in_mailto_autolink => {
                // The scheme in any case; an empty address keeps the text as written.
                let shown = match text.get(..7) {
                    Some(scheme) if scheme.eq_ignore_ascii_case("mailto:") && text.len() > 7 => {
                        text[7..].to_string()
                    }
                    _ => text.to_string(),
                };
                out.push(Event::Text(CowStr::from(shown)));
            }
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            }) => {
                in_link += 1;
                in_mailto_autolink = link_type == pulldown_cmark::LinkType::Autolink
                    && dest_url
                        .get(..7)
                        .is_some_and(|s| s.eq_ignore_ascii_case("mailto:"));
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
                in_mailto_autolink = false;
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

/// For a Chinese page: `<em>` around text with no CJK (wide) character becomes
/// `<em class="latin">`, which the stylesheets keep italic. Chinese emphasis is upright and
/// bold, but the Latin names and titles a Chinese issue emphasises (an author list) read as
/// the editor meant them in italic, as Chinese typesetting sets Western text.
pub fn latin_emphasis(html: &str) -> Cow<'_, str> {
    const OPEN: &str = "<em>";
    const CLOSE: &str = "</em>";
    if !html.contains(OPEN) {
        return html.into();
    }
    let mut out = String::with_capacity(html.len() + 256);
    let mut rest = html;
    while let Some(start) = rest.find(OPEN) {
        let inner_start = start + OPEN.len();
        out.push_str(&rest[..start]);
        let latin = rest[inner_start..].find(CLOSE).is_some_and(|end| {
            let inner = &rest[inner_start..inner_start + end];
            !inner.contains("<em") && !inner.chars().any(crate::text::is_wide)
        });
        out.push_str(if latin { "<em class=\"latin\">" } else { OPEN });
        rest = &rest[inner_start..];
    }
    out.push_str(rest);
    out.into()
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
pub(super) struct FirstParagraph {
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
        let text = crate::text::one_line(&self.text);
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn latin_emphasis_marks_only_emphasis_without_cjk() {
        assert_eq!(
            latin_emphasis("<p><em>Yang Song</em>，<em>扩散模型</em> <em>GPT-4 模型</em></p>"),
            "<p><em class=\"latin\">Yang Song</em>，<em>扩散模型</em> <em>GPT-4 模型</em></p>"
        );
        // Unclosed, the editor's own attributes, and the outer one of two nested: as they are.
        assert_eq!(latin_emphasis("<em>never closed"), "<em>never closed");
        assert_eq!(
            latin_emphasis("<em class=\"x\">raw</em>"),
            "<em class=\"x\">raw</em>"
        );
        assert_eq!(
            latin_emphasis("<em>a <em>b</em></em>"),
            "<em>a <em class=\"latin\">b</em></em>"
        );
    }

    /// The base and page URLs the renderers' tests use.
    pub(in crate::render) fn place() -> (Url, Url) {
        let base = Url::parse("https://d.example.org/papers/").unwrap();
        let page = base.join("march/").unwrap();
        (base, page)
    }

    /// The `Place` of [`place`]'s URLs: the `march/` issue under the base URL.
    fn march() -> Place<'static> {
        static URLS: std::sync::OnceLock<(Url, Url)> = std::sync::OnceLock::new();
        let (base, page) = URLS.get_or_init(place);
        Place {
            base_url: base,
            page_url: page,
        }
    }

    #[test]
    fn relative_destinations_become_absolute() {
        let p = march();
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
        let p = march();
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
        let p = march();
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
    fn image_alt_text_is_collected() {
        let l = links("[a](x.md) ![alt *text*](i.png) ![](j.png)");
        assert_eq!(l.len(), 3);
        assert_eq!(l[1].text, "alt text");
        assert!(l[2].is_image && l[2].text.is_empty());
    }

    // Regression: footnote references were written as `href="#1"`, relative in every feed.
    #[test]
    fn footnote_references_are_absolute_and_numbered() {
        let p = march();
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
    fn a_mailto_autolink_shows_the_address_and_other_links_their_text() {
        let p = march();
        let html = to_html(
            "<mailto:ed@example.org> <MAILTO:Ann@example.org> [write](mailto:x@example.org) <https://example.org/>\n",
            p,
        );
        assert!(
            html.contains("<a href=\"mailto:ed@example.org\">ed@example.org</a>"),
            "{html}"
        );
        assert!(html.contains(">Ann@example.org</a>"), "{html}");
        assert!(html.contains(">write</a>"), "{html}");
        assert!(html.contains(">https://example.org/</a>"), "{html}");
    }

    #[test]
    fn task_list_boxes_are_text_not_inputs() {
        let p = march();
        let html = to_html("- [x] done\n- [ ] to do\n", p);
        assert!(!html.contains("<input"), "{html}");
        assert!(
            html.contains("☑ done") && html.contains("☐ to do"),
            "{html}"
        );
    }

    #[test]
    fn headings_get_unique_ids_in_any_script() {
        let p = march();
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
        let p = march();
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
    fn email_html_drops_scripts_and_forms() {
        let p = march();
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

    #[test]
    fn email_footnotes_are_small_under_a_rule_and_task_items_have_one_marker() {
        let p = march();
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
