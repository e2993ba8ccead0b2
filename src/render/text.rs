//! Markdown -> the plain-text part of an email: wrapped at a width in display columns (a CJK
//! character counts two), links as numbered references under the text. Pure.

use pulldown_cmark::{Event, HeadingLevel, Tag, TagEnd};

use super::markdown::{Place, Target, events};
use crate::text::{display_width, is_wide, wrap};

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
/// whose text is its address stays inline. URLs are never broken across lines.
pub fn to_text(body: &str, place: Place<'_>, width: usize, first_reference: usize) -> Text {
    let mut w = TextWriter::new(width, first_reference);
    for event in events(body, place, Target::Text, None) {
        w.event(event);
    }
    w.finish()
}

/// Marks a soft line break inside a paragraph until it is known whether it joins CJK text
/// (no space) or words (a space).
const SOFT_BREAK: char = '\u{0}';

enum Container {
    Quote,
    Item { marker: String, used: bool },
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
    footnote: Option<String>,
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
                Container::Item { marker, used } => {
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
        let mut before: Option<char> = None;
        for (i, &c) in chars.iter().enumerate() {
            if c == SOFT_BREAK {
                let after = chars.get(i + 1);
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
        if text.is_empty() && self.footnote.is_none() {
            return;
        }
        self.start_block();
        let (mut first, mut rest) = self.prefixes();
        if let Some(label) = self.footnote.take() {
            first.push_str(&format!("[^{label}]: "));
            rest.push_str("    ");
        }
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
            Event::Text(t) => self.inline.push_str(&t),
            Event::Code(t) => {
                self.inline.push('`');
                self.inline.push_str(&t);
                self.inline.push('`');
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
                self.inline.push_str(&format!("[^{label}]"));
            }
            Event::TaskListMarker(done) => {
                self.inline.push_str(if done { "[x] " } else { "[ ] " });
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
                });
            }
            Tag::Item => {
                self.flush_paragraph();
                if let Some(Container::Item { used, .. }) = self.containers.last_mut() {
                    *used = false;
                }
            }
            Tag::FootnoteDefinition(label) => {
                self.flush_paragraph();
                self.footnote = Some(label.to_string());
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
            Tag::Strikethrough => self.inline.push_str("~~"),
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
                if let Some(Container::Item { marker, used }) = self.containers.last_mut() {
                    *used = true;
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
                self.footnote = None;
            }
            TagEnd::TableCell => {
                let cell = self.take_inline().trim().to_string();
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
                    self.inline.push_str(&format!("[{n}]"));
                }
            }
            TagEnd::Image => {
                let Some((start, dest)) = self.image.take() else {
                    return;
                };
                let alt = self.inline.split_off(start);
                let n = self.reference(&dest);
                self.inline
                    .push_str(&format!("[{}][{n}]", alt.trim().replace(SOFT_BREAK, " ")));
            }
            TagEnd::Strikethrough => self.inline.push_str("~~"),
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
    use url::Url;

    fn place() -> (Url, Url) {
        let base = Url::parse("https://d.example.org/papers/").unwrap();
        let page = base.join("march/").unwrap();
        (base, page)
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
}
