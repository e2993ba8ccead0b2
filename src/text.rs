//! Text as readers see it: one-line fields, characters XML can carry, display width (a CJK
//! character takes two columns) and line wrapping. Pure.

use std::ops::Range;

/// Characters allowed in XML 1.0 documents.
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Removes characters that XML 1.0 cannot carry.
pub fn strip_invalid_xml_chars(s: &str) -> String {
    if has_invalid_xml_char(s) {
        s.chars().filter(|&c| is_xml_char(c)).collect()
    } else {
        s.to_string()
    }
}

/// Whether `s` has a character that XML 1.0 cannot carry: a C0 control other than tab, LF
/// and CR, or U+FFFE or U+FFFF (surrogates cannot occur in a `str`). Every issue body passes
/// through here whole, so the controls are looked for in the bytes, a block at a time without
/// stopping early, which the compiler turns into vector instructions.
fn has_invalid_xml_char(s: &str) -> bool {
    let is_bad_control = |b: u8| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r');
    s.as_bytes()
        .chunks(64)
        .any(|block| block.iter().fold(false, |bad, &b| bad | is_bad_control(b)))
        || s.contains('\u{FFFE}')
        || s.contains('\u{FFFF}')
}

/// Text for a one-line field: control characters and line breaks become spaces, runs of
/// whitespace collapse, ends are trimmed.
pub fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s
        .split(|c: char| c.is_whitespace() || c.is_control() || !is_xml_char(c))
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
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
pub const KEEP_OPEN: &str = "\u{1b}[1m";

pub const KEEP_CLOSE: &str = "\u{1b}[0m";

/// `text` without the keep-together marks.
pub fn strip_keep(text: &str) -> String {
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
/// The first `max` characters of `s`, with `…` when it is longer: a value shown in a message.
pub fn cut(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => s.into(),
        Some((end, _)) => format!("{}…", &s[..end]).into(),
    }
}

pub fn display_width(s: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(s)
}

pub fn is_wide(c: char) -> bool {
    unicode_width::UnicodeWidthChar::width(c) == Some(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_whole_characters() {
        assert_eq!(cut("论文月刊", 2), "论文…");
        assert_eq!(cut("论文", 2), "论文");
        assert_eq!(cut("", 0), "");
        assert_eq!(cut("ab", 0), "…");
    }

    #[test]
    fn the_byte_check_for_xml_characters_agrees_with_the_character_check() {
        let edges = [
            '\u{0}',
            '\u{8}',
            '\t',
            '\n',
            '\u{B}',
            '\r',
            '\u{1F}',
            ' ',
            '\u{7F}',
            '\u{85}',
            '\u{D7FF}',
            '\u{E000}',
            '\u{FFEF}',
            '\u{FFFD}',
            '\u{FFFE}',
            '\u{FFFF}',
            '\u{10000}',
            '\u{10FFFF}',
            '，',
            '论',
        ];
        for c in edges {
            let s = format!("a{c}b");
            assert_eq!(has_invalid_xml_char(&s), !is_xml_char(c), "{:?}", c);
        }
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
}
