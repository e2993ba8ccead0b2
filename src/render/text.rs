//! Markdown -> the plain-text part of an email: wrapped at a width in display columns (a CJK
//! character counts two), links as numbered references under the text. Pure.

use pulldown_cmark::{Event, HeadingLevel, Tag, TagEnd};

use super::markdown::{Place, Target, events};
use std::collections::HashMap;

use crate::text::{KEEP_CLOSE, KEEP_OPEN, display_width, is_wide, strip_keep, wrap};

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
/// (`[n]` in the text) and are written as notes under a short rule after the text, in one
/// list with the links' addresses, by number; task-list items show `[ ]`/`[x]` instead of a
/// bullet; struck-out text reads `[struck out: …]` (in Chinese `[删去：…]`).
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
    w.struck = crate::render::i18n::strings(language).struck();
    for event in events(body, place, Target::Text, None) {
        w.event(event);
    }
    w.finish()
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
            // Notes and link addresses share the numbers: one list under the rule, in the
            // order of their numbers, so that each `[n]` is found where the reader looks.
            let mut entries: Vec<(usize, String)> = std::mem::take(&mut self.notes)
                .into_iter()
                .map(|(n, note)| {
                    if note.trim().is_empty() {
                        (n, format!("[{n}]\n"))
                    } else {
                        (n, note)
                    }
                })
                .chain(
                    std::mem::take(&mut self.references)
                        .into_iter()
                        .map(|(n, dest)| (n, format!("[{n}] {dest}\n"))),
                )
                .collect();
            entries.sort_by_key(|(n, _)| *n);
            if !self.out.is_empty() {
                self.out.push('\n');
            }
            self.out.push_str(NOTES_RULE);
            self.out.push('\n');
            for (_, entry) in entries {
                self.out.push_str(&entry);
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
    use crate::render::markdown::tests::place;

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
        let expected = "A claim[1] with a link[2], again[1] and\none more[3].\n\n----------\n[1] The note, which is long enough that\n    it has to wrap onto a second line.\n\n    With a second paragraph.\n[2] https://x.example/\n[3] Short.\n";
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
}
