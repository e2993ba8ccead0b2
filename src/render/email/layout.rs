//! The email's look: the HTML document around the rendered body (Maud, the editor's CSS
//! inlined), the plain-text part around the text body, and the footer with its required
//! unsubscribe link and postal address.

use super::*;

/// The HTML around an issue's body (head, header, footer) with the CSS inlined, and stand-ins
/// for what differs between issues. Inlining the frame is most of the cost of inlining, so it
/// is done once per newsletter, not once per issue.
#[derive(Clone, Debug)]
pub(super) struct Frame {
    /// The settings the frame was made with.
    pub(super) key: String,
    pub(super) html: String,
}

pub(super) const FRAME_TITLE: &str = "gazetteframetitle0000";

pub(super) const FRAME_META: &str = "gazetteframemeta0000";

pub(super) const FRAME_SUMMARY: &str = "gazetteframesummary0000";

pub(super) const FRAME_BODY: &str = "gazetteframebody0000";

pub(super) const FRAME_WEB_URL: &str = "https://gazette.invalid/frame-web-url-0000";

/// The unsubscribe URL template around `{token}`, normalised to ASCII.
pub(super) fn split_unsubscribe_url(template: &str) -> anyhow::Result<(String, String)> {
    const TOKEN: &str = "GAZETTETOKENGAZETTE";
    let url = url::Url::parse(&template.replace("{token}", TOKEN))
        .with_context(|| format!("email.unsubscribe_url `{template}` is not a URL"))?;
    let url = url.as_str();
    match url.split_once(TOKEN) {
        Some((a, b)) => Ok((a.to_string(), b.to_string())),
        None => bail!("email.unsubscribe_url `{template}` has no {{token}}"),
    }
}

/// The footer template with the issue's values filled in and the per-recipient ones marked.
/// Every email carries a visible unsubscribe link and the postal address: a template without
/// `{unsubscribe_url}` or `{postal_address}` gets them added at its end (`check` warns).
pub(super) fn footer_markdown(
    template: &str,
    config: &Config,
    title: &str,
    page_url: &str,
) -> String {
    let marker = |slot: Slot| {
        MARKERS
            .iter()
            .find(|(s, _)| *s == slot)
            .map_or("", |(_, m)| *m)
    };
    let words = crate::render::i18n::strings(&config.language);
    let template = words.footer(template);
    let mut template = template.trim_end().to_string();
    for (placeholder, line) in FOOTER_REQUIRED {
        if !template.contains(placeholder) {
            template.push_str("\n\n");
            // The link's words in the newsletter's language.
            template
                .push_str(&line.replace("[Unsubscribe]", &format!("[{}]", words.unsubscribe())));
        }
    }
    template.push('\n');
    template
        .replace("{newsletter}", &markdown_escape(&config.title))
        .replace("{title}", &markdown_escape(title))
        .replace("{postal_address}", &markdown_escape(&config.postal_address))
        .replace("{web_url}", page_url)
        .replace("{unsubscribe_url}", marker(Slot::UnsubscribeUrl))
        .replace("{email}", marker(Slot::Email))
        .replace("{name}", marker(Slot::Name))
}

/// What every footer must hold, and the line added when the template lacks it.
pub const FOOTER_REQUIRED: [(&str, &str); 2] = [
    ("{unsubscribe_url}", "[Unsubscribe]({unsubscribe_url})"),
    ("{postal_address}", "{postal_address}"),
];

/// The frame with each stand-in replaced, in one pass: an issue's text that happens to hold a
/// stand-in is never read as one.
pub(super) fn fill_frame(frame: &str, values: &[(&str, &str)]) -> String {
    let mut out =
        String::with_capacity(frame.len() + values.iter().map(|v| v.1.len()).sum::<usize>());
    let mut rest = frame;
    while let Some((at, marker, value)) = values
        .iter()
        .filter_map(|(m, v)| rest.find(m).map(|at| (at, *m, *v)))
        .min_by_key(|(at, _, _)| *at)
    {
        out.push_str(&rest[..at]);
        out.push_str(value);
        rest = &rest[at + marker.len()..];
    }
    out.push_str(rest);
    out
}

/// Text that Markdown shows as written: ASCII punctuation behind a backslash.
pub(super) fn markdown_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_punctuation() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `No. 3 · 2023-03-31`, or `第 3 期 · 2023年3月31日`, in the newsletter's language.
pub(super) fn meta_line(config: &Config, issue: &Issue) -> String {
    let words = crate::render::i18n::strings(&config.language);
    let date = words.date(issue.date);
    match issue.number {
        Some(n) => format!("{} · {date}", words.issue_number(n)),
        None => date,
    }
}

/// The HTML document before CSS inlining. The issue's and the footer's rendered Markdown are
/// the only markup that enters unescaped (and the editor's CSS, inside `<style>`).
pub(super) fn html_document(
    config: &Config,
    title: &str,
    meta: &str,
    summary: &str,
    fragment: &str,
    footer: &str,
    css: &str,
) -> Markup {
    let css = css.replace("</", "<\\/");
    html! {
        (DOCTYPE)
        html lang=(config.language) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="x-apple-disable-message-reformatting";
                meta name="color-scheme" content="light dark";
                meta name="supported-color-schemes" content="light dark";
                title { (title) }
                style { (PreEscaped(css)) }
            }
            body.body {
                // The preview line: hidden by `display: none` (and `mso-hide` for Outlook), no
                // filler characters and no text coloured like its background, which spam
                // filters read as hidden text (HTML_FONT_LOW_CONTRAST, HTML_OBFUSCATE_*).
                div.preheader { (summary) }
                table.wrapper role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" {
                    tr {
                        td.outer align="center" {
                            table.container role="presentation" width="600" cellpadding="0" cellspacing="0" border="0" {
                                tr {
                                    td.header {
                                        p.newsletter { (config.title) }
                                        h1.title { (title) }
                                        p.meta { (meta) }
                                    }
                                }
                                tr { td.content { (PreEscaped(fragment)) } }
                                tr { td.footer { (PreEscaped(footer)) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The text part: a header, the body, its links, then the footer and its links.
pub(super) fn plain_text(config: &Config, issue: &Issue, body: &str, footer: &str) -> String {
    let mut out = String::new();
    let head = format!("{} · {}", config.title, meta_line(config, issue));
    for line in crate::text::wrap(&head, TEXT_WIDTH, "", "") {
        out.push_str(&line);
        out.push('\n');
    }
    out.push('\n');
    let title = crate::text::wrap(&one_line(&issue.title), TEXT_WIDTH, "", "");
    let widest = title
        .iter()
        .map(|l| crate::text::display_width(l))
        .max()
        .unwrap_or(0);
    for line in &title {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&"=".repeat(widest.clamp(3, TEXT_WIDTH)));
    out.push_str("\n\n");
    out.push_str(body);
    out.push('\n');
    out.push_str(&"-".repeat(TEXT_WIDTH));
    out.push('\n');
    out.push_str(footer);
    out
}
