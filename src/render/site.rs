//! Published issues + settings -> the web pages: the archive (`index.html`) and one page per
//! issue, with feed autodiscovery links. Pure: returns HTML strings; the caller writes them.

use chrono::{DateTime, FixedOffset};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::config::Config;
use crate::issue::Issue;
use crate::render::feed::{ATOM_FILE, JSON_FILE, RSS_FILE};
use crate::render::i18n::SignUp;

/// The stylesheet's file name under `feeds/`, copied from `templates/site.css`.
pub const STYLESHEET: &str = "style.css";

/// A neighbouring issue, for the previous/next links of a page.
#[derive(Clone, Copy, Debug)]
pub struct Neighbour<'a> {
    pub slug: &'a str,
    pub title: &'a str,
}

/// A date in the newsletter's language: `2023-03-31`, `2023年3月31日`.
fn date_label(config: &Config, date: DateTime<FixedOffset>) -> String {
    crate::render::i18n::strings(&config.language).date(date)
}

/// `No. 3 · ` or `第 3 期 · `.
fn number_label(config: &Config, n: impl std::fmt::Display) -> String {
    format!(
        "{} · ",
        crate::render::i18n::strings(&config.language).issue_number(n)
    )
}

/// What a page is, for its `<head>`: link previews (Open Graph) need the kind and the title
/// without the site's name.
struct PageMeta<'a> {
    /// The `<title>`.
    title: &'a str,
    /// The title shown in link previews.
    headline: &'a str,
    description: &'a str,
    canonical: &'a str,
    /// `Some` for an issue: its publication date and authors.
    article: Option<(DateTime<FixedOffset>, &'a [String])>,
}

fn head(config: &Config, page: &PageMeta<'_>, root: &str) -> Markup {
    html! {
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        meta name="color-scheme" content="light dark";
        meta name="generator" content="gazette";
        title { (page.title) }
        @if !page.description.is_empty() {
            meta name="description" content=(page.description);
        }
        meta property="og:site_name" content=(config.title);
        meta property="og:title" content=(page.headline);
        @if !page.description.is_empty() {
            meta property="og:description" content=(page.description);
        }
        meta property="og:url" content=(page.canonical);
        @if let Some((date, authors)) = page.article {
            meta property="og:type" content="article";
            meta property="article:published_time" content=(date.to_rfc3339());
            @for author in authors {
                meta name="author" content=(author);
            }
        } @else {
            meta property="og:type" content="website";
        }
        link rel="canonical" href=(page.canonical);
        link rel="alternate" type="application/rss+xml" title=(config.title) href=(config.feed_url(RSS_FILE));
        link rel="alternate" type="application/atom+xml" title=(config.title) href=(config.feed_url(ATOM_FILE));
        link rel="alternate" type="application/feed+json" title=(config.title) href=(config.feed_url(JSON_FILE));
        link rel="stylesheet" href={ (root) (STYLESHEET) };
    }
}

fn feeds_nav() -> Markup {
    html! {
        nav.feeds aria-label="Feeds" {
            a href={ "../" (RSS_FILE) } { "RSS" } " · "
            a href={ "../" (ATOM_FILE) } { "Atom" } " · "
            a href={ "../" (JSON_FILE) } { "JSON Feed" }
        }
    }
}

/// The web version of one issue; `html` is its rendered body.
pub fn issue_page(
    config: &Config,
    issue: &Issue,
    html: &str,
    summary: &str,
    previous: Option<Neighbour<'_>>,
    next: Option<Neighbour<'_>>,
) -> String {
    let canonical = config.issue_url(&issue.slug).to_string();
    let page = html! {
        (DOCTYPE)
        html lang=(config.language) {
            head {
                (head(config, &PageMeta {
                    title: &format!("{} · {}", issue.title, config.title),
                    headline: &issue.title,
                    description: summary,
                    canonical: &canonical,
                    article: Some((issue.date, &issue.authors)),
                }, "../"))
            }
            body {
                header.site {
                    a href="../" { (config.title) }
                }
                main {
                    article {
                        header {
                            h1 { (issue.title) }
                            p.meta {
                                @if let Some(n) = issue.number { (number_label(config, n)) }
                                time datetime=(issue.date.to_rfc3339()) { (date_label(config, issue.date)) }
                                @if !issue.authors.is_empty() {
                                    " · " span.authors { (issue.authors.join(", ")) }
                                }
                                @if let Some(updated) = issue.updated {
                                    (crate::render::i18n::strings(&config.language).updated)
                                    time datetime=(updated.to_rfc3339()) { (date_label(config, updated)) }
                                }
                                @for tag in &issue.tags { " " span.tag { (tag) } }
                            }
                        }
                        @if crate::render::i18n::is_chinese(&config.language) {
                            (PreEscaped(crate::render::markdown::latin_emphasis(html)))
                        } @else {
                            (PreEscaped(html))
                        }
                    }
                }
                nav.pager aria-label="More issues" {
                    @if let Some(p) = previous { a rel="prev" href={ "../" (p.slug) "/" } { "← " (p.title) } }
                    @if let Some(n) = next { a rel="next" href={ "../" (n.slug) "/" } { (n.title) " →" } }
                }
                footer { (subscribe_form(config)) (feeds_nav()) }
            }
        }
    };
    page.into_string()
}

/// The archive: every published issue, newest first.
pub fn index_page(config: &Config, issues: &[(&Issue, String)]) -> String {
    let canonical = config.base_url.to_string();
    let page = html! {
        (DOCTYPE)
        html lang=(config.language) {
            head {
                (head(config, &PageMeta {
                    title: &config.title,
                    headline: &config.title,
                    description: &config.description,
                    canonical: &canonical,
                    article: None,
                }, ""))
            }
            body {
                header.site {
                    h1 { (config.title) }
                    @if !config.description.is_empty() { p { (config.description) } }
                }
                main {
                    ol.archive reversed {
                        @for (issue, summary) in issues {
                            li {
                                time datetime=(issue.date.to_rfc3339()) { (date_label(config, issue.date)) }
                                " "
                                a href={ (issue.slug) "/" } {
                                    @if let Some(n) = issue.number { (number_label(config, n)) }
                                    (issue.title)
                                }
                                @if !summary.is_empty() { p { (summary) } }
                            }
                        }
                    }
                }
                footer {
                    (subscribe_form(config))
                    nav.feeds aria-label="Feeds" {
                        a href=(RSS_FILE) { "RSS" } " · "
                        a href=(ATOM_FILE) { "Atom" } " · "
                        a href=(JSON_FILE) { "JSON Feed" }
                    }
                }
            }
        }
    };
    page.into_string()
}

/// With `[serve]` configured, the sign-up form posting to `<base_url>subscribe`.
fn subscribe_form(config: &Config) -> Markup {
    if !config.serve.configured {
        return html! {};
    }
    let words = crate::render::i18n::sign_up(&config.language);
    html! {
        section.subscribe aria-label=(words.subscribe) {
            (signup_form(&format!("{}subscribe", config.base_url), words))
        }
    }
}

/// The honeypot's field name: hidden from people, filled in by form-filling bots.
pub const HONEYPOT: &str = "website";

/// The subscribe form, as `gazette serve` and the published pages show it. Posts to
/// `<base_url>subscribe`; the honeypot is hidden from people (and from screen readers).
pub fn signup_form(action: &str, words: &SignUp) -> Markup {
    html! {
        form.subscribe method="post" action=(action) {
            p { (words.invite) }
            p {
                label for="subscribe-email" { (words.email_label) }
                " "
                input #subscribe-email type="email" name="email" required autocomplete="email" maxlength="254";
            }
            p {
                label for="subscribe-name" { (words.name_label) }
                " "
                input #subscribe-name type="text" name="name" autocomplete="name" maxlength="200";
            }
            div aria-hidden="true" style="position:absolute;left:-10000px;width:1px;height:1px;overflow:hidden" {
                label for="subscribe-website" { (words.honeypot_label) }
                input #subscribe-website type="text" name=(HONEYPOT) tabindex="-1" autocomplete="off";
            }
            p { button type="submit" { (words.subscribe_button) } }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn feeds_nav_points_at_the_feeds_from_an_issue_page() {
        let nav = super::feeds_nav().into_string();
        assert!(nav.contains(r#"href="../atom.xml""#), "{nav}");
    }
}
