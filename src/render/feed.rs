//! Published issues + settings -> RSS 2.0, Atom 1.0 and JSON Feed 1.1 documents, as strings.
//! Pure: the caller decides which entries and writes the files. Dates come from the issues,
//! never from the clock; one id serves as RSS guid, Atom id and JSON Feed id.

use std::collections::BTreeMap;

use atom_syndication as atom;
use chrono::{DateTime, FixedOffset};
use rss::extension::atom::{AtomExtensionBuilder, Link as AtomLink};
use rss::extension::dublincore::DublinCoreExtensionBuilder;
use serde::Serialize;

use crate::config::Config;
use crate::issue::Issue;

pub const RSS_FILE: &str = "rss.xml";
pub const ATOM_FILE: &str = "atom.xml";
pub const JSON_FILE: &str = "feed.json";
const GENERATOR: &str = "gazette";

/// One issue as it appears in a feed: its page URL, full HTML content and plain summary.
#[derive(Clone, Debug)]
pub struct Entry<'a> {
    pub issue: &'a Issue,
    pub url: String,
    pub html: String,
    pub summary: String,
}

impl Entry<'_> {
    fn authors<'c>(&'c self, config: &'c Config) -> Vec<&'c str> {
        if self.issue.authors.is_empty() {
            vec![config.author.name.as_str()]
        } else {
            self.issue.authors.iter().map(String::as_str).collect()
        }
    }
}

/// The newest change among the entries: the feeds' own updated date.
fn feed_updated(entries: &[Entry<'_>]) -> Option<DateTime<FixedOffset>> {
    entries.iter().map(|e| e.issue.modified()).max()
}

/// The feed's permanent id, like the entries' built from `id_authority`.
pub fn feed_id(config: &Config) -> String {
    format!("tag:{},2000:feed", config.id_authority)
}

/// RSS 2.0 with content:encoded, dc:creator and an atom:link to itself. `entries` newest
/// first.
pub fn rss(config: &Config, entries: &[Entry<'_>]) -> String {
    let items: Vec<rss::Item> = entries
        .iter()
        .map(|e| {
            let i = e.issue;
            rss::ItemBuilder::default()
                .title(Some(i.title.clone()))
                .link(Some(e.url.clone()))
                .guid(Some(rss::Guid {
                    value: i.id.clone(),
                    permalink: false,
                }))
                .pub_date(Some(i.date.to_rfc2822()))
                .description(Some(escape_html(&e.summary)))
                .content(Some(e.html.clone()))
                .categories(
                    i.tags
                        .iter()
                        .map(|t| rss::Category {
                            name: t.clone(),
                            domain: None,
                        })
                        .collect::<Vec<_>>(),
                )
                .dublin_core_ext(Some(
                    DublinCoreExtensionBuilder::default()
                        .creators(
                            e.authors(config)
                                .into_iter()
                                .map(String::from)
                                .collect::<Vec<_>>(),
                        )
                        .build(),
                ))
                .build()
        })
        .collect();
    let self_link = AtomLink {
        href: config.feed_url(RSS_FILE).to_string(),
        rel: "self".into(),
        mime_type: Some("application/rss+xml".into()),
        ..AtomLink::default()
    };
    let updated = feed_updated(entries).map(|d| d.to_rfc2822());
    let mut namespaces = BTreeMap::new();
    namespaces.insert(
        "atom".to_string(),
        "http://www.w3.org/2005/Atom".to_string(),
    );
    namespaces.insert(
        "content".to_string(),
        "http://purl.org/rss/1.0/modules/content/".to_string(),
    );
    namespaces.insert(
        "dc".to_string(),
        "http://purl.org/dc/elements/1.1/".to_string(),
    );
    let channel = rss::ChannelBuilder::default()
        .title(config.title.clone())
        .link(config.base_url.to_string())
        .description(if config.description.is_empty() {
            config.title.clone()
        } else {
            config.description.clone()
        })
        .language(Some(config.language.clone()))
        .managing_editor(
            config
                .author
                .email
                .as_ref()
                .map(|email| format!("{email} ({})", config.author.name)),
        )
        .generator(Some(GENERATOR.into()))
        .docs(Some("https://www.rssboard.org/rss-specification".into()))
        .last_build_date(updated.clone())
        .pub_date(updated)
        .namespaces(namespaces)
        .atom_ext(Some(
            AtomExtensionBuilder::default()
                .links(vec![self_link])
                .build(),
        ))
        .items(items)
        .build();
    let mut out = Vec::with_capacity(entries.iter().map(|e| e.html.len() + 1024).sum());
    channel
        .pretty_write_to(&mut out, b' ', 2)
        .expect("writing XML to memory cannot fail");
    let mut text = String::from_utf8(out).expect("the XML writer emits UTF-8");
    text.push('\n');
    text
}

/// Plain text as HTML: RSS readers render `description` as HTML, so a summary that mentions
/// `<b>` or `&amp;` must be escaped to read as written.
fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Atom 1.0 with full HTML content and a text summary. `entries` newest first.
pub fn atom(config: &Config, entries: &[Entry<'_>]) -> String {
    let person = |name: &str| atom::Person {
        name: name.to_string(),
        email: None,
        uri: None,
        extensions: Default::default(),
    };
    let feed_author = atom::Person {
        name: config.author.name.clone(),
        email: config.author.email.clone(),
        uri: Some(config.base_url.to_string()),
        extensions: Default::default(),
    };
    let fixed = |d: DateTime<FixedOffset>| d;
    let atom_entries: Vec<atom::Entry> = entries
        .iter()
        .map(|e| {
            let i = e.issue;
            atom::EntryBuilder::default()
                .id(i.id.clone())
                .title(atom::Text::plain(i.title.clone()))
                .updated(fixed(i.modified()))
                .published(Some(i.date))
                .links(vec![atom::Link {
                    href: e.url.clone(),
                    rel: "alternate".into(),
                    mime_type: Some("text/html".into()),
                    ..atom::Link::default()
                }])
                .authors(
                    e.authors(config)
                        .into_iter()
                        .map(person)
                        .collect::<Vec<_>>(),
                )
                .categories(
                    i.tags
                        .iter()
                        .map(|t| atom::Category {
                            term: t.clone(),
                            ..atom::Category::default()
                        })
                        .collect::<Vec<_>>(),
                )
                .summary(Some(atom::Text::plain(e.summary.clone())))
                .content(Some(atom::Content {
                    base: Some(e.url.clone()),
                    value: Some(e.html.clone()),
                    content_type: Some("html".into()),
                    ..atom::Content::default()
                }))
                .build()
        })
        .collect();
    let updated = feed_updated(entries).unwrap_or_else(|| {
        DateTime::parse_from_rfc3339("2000-01-01T00:00:00Z").expect("a constant date parses")
    });
    let mut feed = atom::FeedBuilder::default()
        .id(feed_id(config))
        .title(atom::Text::plain(config.title.clone()))
        .updated(updated)
        .authors(vec![feed_author])
        .links(vec![
            atom::Link {
                href: config.feed_url(ATOM_FILE).to_string(),
                rel: "self".into(),
                mime_type: Some("application/atom+xml".into()),
                ..atom::Link::default()
            },
            atom::Link {
                href: config.base_url.to_string(),
                rel: "alternate".into(),
                mime_type: Some("text/html".into()),
                ..atom::Link::default()
            },
        ])
        .generator(Some(atom::Generator {
            value: GENERATOR.into(),
            uri: None,
            version: Some(env!("CARGO_PKG_VERSION").into()),
        }))
        .entries(atom_entries)
        .build();
    if !config.description.is_empty() {
        feed.set_subtitle(Some(atom::Text::plain(config.description.clone())));
    }
    feed.set_lang(Some(config.language.clone()));
    let mut out = Vec::with_capacity(entries.iter().map(|e| e.html.len() + 1024).sum());
    feed.write_with_config(
        &mut out,
        atom::WriteConfig {
            write_document_declaration: true,
            indent_size: Some(2),
        },
    )
    .expect("writing XML to memory cannot fail");
    let mut text = String::from_utf8(out).expect("the XML writer emits UTF-8");
    text.push('\n');
    text
}

#[derive(Serialize)]
struct JsonFeed<'a> {
    version: &'static str,
    title: &'a str,
    home_page_url: String,
    feed_url: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    description: &'a str,
    language: &'a str,
    authors: Vec<JsonAuthor<'a>>,
    items: Vec<JsonItem<'a>>,
}

#[derive(Serialize)]
struct JsonAuthor<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
}

#[derive(Serialize)]
struct JsonItem<'a> {
    id: &'a str,
    url: &'a str,
    title: &'a str,
    content_html: &'a str,
    summary: &'a str,
    date_published: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    date_modified: Option<String>,
    authors: Vec<JsonAuthor<'a>>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    tags: &'a [String],
}

/// JSON Feed 1.1. `entries` newest first.
pub fn json(config: &Config, entries: &[Entry<'_>]) -> String {
    let feed = JsonFeed {
        version: "https://jsonfeed.org/version/1.1",
        title: &config.title,
        home_page_url: config.base_url.to_string(),
        feed_url: config.feed_url(JSON_FILE).to_string(),
        description: &config.description,
        language: &config.language,
        authors: vec![JsonAuthor {
            name: &config.author.name,
            url: Some(config.base_url.to_string()),
        }],
        items: entries
            .iter()
            .map(|e| JsonItem {
                id: &e.issue.id,
                url: &e.url,
                title: &e.issue.title,
                content_html: &e.html,
                summary: &e.summary,
                date_published: e.issue.date.to_rfc3339(),
                date_modified: e.issue.updated.map(|_| e.issue.modified().to_rfc3339()),
                authors: e
                    .authors(config)
                    .into_iter()
                    .map(|name| JsonAuthor { name, url: None })
                    .collect(),
                tags: &e.issue.tags,
            })
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&feed).expect("a feed serializes");
    text.push('\n');
    text
}
