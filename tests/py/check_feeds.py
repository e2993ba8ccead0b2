#!/usr/bin/env python3
"""Reads the feeds gazette wrote with independent readers and checks them against what the
issues say.

    check_feeds.py FEEDS_DIR EXPECTATIONS.json
    check_feeds.py FEEDS_DIR        (expectations taken from feed.json: the formats must agree)

EXPECTATIONS.json (written by the Rust test):
    {"title", "language", "base_url", "updated" (unix seconds),
     "entries": [{"id", "title", "url", "published" (unix seconds), "updated" (unix seconds),
                  "tags": [...], "content_contains": [...], "summary"?}],   newest first
     "forbidden": ["unsubscribe", ...]}

Prints one line per problem and exits 1 when there is any.
"""

import calendar
import datetime
import email.utils
import functools
import html.parser
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit

import feedparser

problems = []


def problem(msg):
    problems.append(msg)


def expect(what, got, want):
    if got != want:
        problem(f"{what}: got {got!r}, want {want!r}")


RFC822 = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}$"
)
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


class Html(html.parser.HTMLParser):
    """Collects every URL-valued attribute and the text of an HTML fragment."""

    URL_ATTRS = {"href", "src", "srcset", "poster", "cite", "action", "data"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.urls = []
        self.ids = []
        self.text = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in self.URL_ATTRS and value is not None:
                self.urls.append((tag, name, value))
            if name == "id":
                self.ids.append(value)

    handle_startendtag = handle_starttag

    def handle_data(self, data):
        self.text.append(data)


@functools.lru_cache(maxsize=64)
def parse_html(fragment):
    """Parsed once per distinct fragment: the readers mostly hand back the same content."""
    p = Html()
    p.feed(fragment)
    p.close()
    return p


def check_content(where, content, want):
    """`content` is HTML: every URL absolute, expected text present, no email-only material."""
    h = parse_html(content)
    for tag, attr, url in h.urls:
        parts = urlsplit(url)
        if parts.scheme in ("http", "https"):
            if not parts.netloc:
                problem(f"{where}: <{tag} {attr}={url!r}> has no host")
        elif parts.scheme != "mailto":
            problem(f"{where}: <{tag} {attr}={url!r}> is not absolute")
    text = "".join(h.text)
    for needle in want["content_contains"]:
        if needle not in text:
            problem(f"{where}: content text lacks {needle!r}")
    lowered = content.lower()
    for bad in EXPECT.get("forbidden", []):
        if bad.lower() in lowered:
            problem(f"{where}: content carries email-only material {bad!r}")


def ts(parsed):
    return calendar.timegm(parsed) if parsed else None


def check_parsed(kind, path):
    # Raw content: no sanitising, and no resolving of relative URLs that would hide them.
    f = feedparser.parse(path.read_bytes(), sanitize_html=False, resolve_relative_uris=False)
    if f.bozo:
        problem(f"{kind}: feedparser bozo: {f.get('bozo_exception')!r}")
    expect(f"{kind} feed title", f.feed.get("title"), EXPECT["title"])
    expect(f"{kind} language", f.feed.get("language"), EXPECT["language"])
    links = {l.get("rel"): l.get("href") for l in f.feed.get("links", [])}
    expect(f"{kind} self link", links.get("self"), EXPECT["base_url"] + path.name)
    expect(f"{kind} alternate link", f.feed.get("link"), EXPECT["base_url"])
    expect(f"{kind} feed updated", ts(f.feed.get("updated_parsed")), EXPECT["updated"])
    expect(f"{kind} generator", (f.feed.get("generator") or "").split()[0:1], ["gazette"])
    entries = EXPECT["entries"]
    expect(f"{kind} entry count", len(f.entries), len(entries))
    for got, want in zip(f.entries, entries):
        where = f"{kind} entry {want['id']}"
        expect(f"{where} id", got.get("id"), want["id"])
        expect(f"{where} title", got.get("title"), want["title"])
        expect(f"{where} title type", got.get("title_detail", {}).get("type"), "text/plain")
        expect(f"{where} link", got.get("link"), want["url"])
        expect(f"{where} published", ts(got.get("published_parsed")), want["published"])
        if kind == "atom":
            expect(f"{where} updated", ts(got.get("updated_parsed")), want["updated"])
        expect(f"{where} tags", [t["term"] for t in got.get("tags", [])], want["tags"])
        contents = got.get("content", [])
        if len(contents) != 1:
            problem(f"{where}: {len(contents)} content elements, want 1")
            continue
        expect(f"{where} content type", contents[0]["type"], "text/html")
        check_content(where, contents[0]["value"], want)
        if "summary" in want:
            summary = got.get("summary", "")
            if kind == "rss":
                # RSS descriptions are HTML; what a reader shows is the text.
                summary = "".join(parse_html(summary).text)
            expect(f"{where} summary", summary, want["summary"])


def check_rss_raw(path):
    root = ET.parse(path).getroot()
    ch = root.find("channel")
    atom = "{http://www.w3.org/2005/Atom}"
    self_links = [l for l in ch.findall(atom + "link") if l.get("rel") == "self"]
    expect("rss atom:link self", [l.get("href") for l in self_links], [EXPECT["base_url"] + "rss.xml"])
    expect("rss language", ch.findtext("language"), EXPECT["language"])
    for name in ("lastBuildDate", "pubDate"):
        v = ch.findtext(name)
        if v is None or not RFC822.match(v):
            problem(f"rss {name} {v!r} is not RFC 822 with a numeric offset")
        elif calendar.timegm(email.utils.parsedate_tz(v)[:9]) - email.utils.parsedate_tz(v)[9] != EXPECT["updated"]:
            problem(f"rss {name} {v!r} is not the newest entry's date")
    for item, want in zip(ch.findall("item"), EXPECT["entries"]):
        guid = item.find("guid")
        expect("rss guid", guid.text, want["id"])
        expect("rss guid isPermaLink", guid.get("isPermaLink"), "false")
        v = item.findtext("pubDate")
        if not RFC822.match(v or ""):
            problem(f"rss pubDate {v!r} is not RFC 822 with a numeric offset")
        want_offset = want.get("offset")
        if want_offset is not None and not v.endswith(want_offset.replace(":", "")):
            problem(f"rss pubDate {v!r} lost the issue's offset {want_offset}")


def check_atom_raw(path):
    root = ET.parse(path).getroot()
    ns = "{http://www.w3.org/2005/Atom}"
    expect("atom xml:lang", root.get("{http://www.w3.org/XML/1998/namespace}lang"), EXPECT["language"])
    for el in root.iter():
        if el.tag in (ns + "updated", ns + "published") and not RFC3339.match(el.text or ""):
            problem(f"atom {el.tag} {el.text!r} is not RFC 3339")
    for entry, want in zip(root.findall(ns + "entry"), EXPECT["entries"]):
        offset = want.get("offset")
        published = entry.findtext(ns + "published")
        if offset and not published.endswith(offset):
            problem(f"atom published {published!r} lost the issue's offset {offset}")


def check_json(path):
    try:
        feed = json.loads(path.read_text(encoding="utf-8"))
    except Exception as e:  # noqa: BLE001 - any failure is the problem
        problem(f"feed.json does not parse: {e}")
        return
    expect("json version", feed.get("version"), "https://jsonfeed.org/version/1.1")
    expect("json title", feed.get("title"), EXPECT["title"])
    expect("json language", feed.get("language"), EXPECT["language"])
    expect("json feed_url", feed.get("feed_url"), EXPECT["base_url"] + "feed.json")
    expect("json home_page_url", feed.get("home_page_url"), EXPECT["base_url"])
    items = feed.get("items")
    if not isinstance(items, list):
        problem("json items is not a list")
        return
    expect("json item count", len(items), len(EXPECT["entries"]))
    for got, want in zip(items, EXPECT["entries"]):
        where = f"json item {want['id']}"
        if not isinstance(got.get("id"), str):
            problem(f"{where}: id is not a string")
        if "content_html" not in got and "content_text" not in got:
            problem(f"{where}: neither content_html nor content_text")
        expect(f"{where} id", got.get("id"), want["id"])
        expect(f"{where} title", got.get("title"), want["title"])
        expect(f"{where} url", got.get("url"), want["url"])
        expect(f"{where} tags", got.get("tags", []), want["tags"])
        for key in ("date_published", "date_modified"):
            if key in got and not RFC3339.match(got[key]):
                problem(f"{where}: {key} {got[key]!r} is not RFC 3339")
        if want.get("offset") and not got["date_published"].endswith(want["offset"]):
            problem(f"{where}: date_published lost the issue's offset")
        check_content(where, got.get("content_html", ""), want)
        if "summary" in want:
            expect(f"{where} summary", got.get("summary"), want["summary"])


def check_sfeed(path):
    try:
        out = subprocess.run(
            ["sfeed"], stdin=path.open("rb"), capture_output=True, timeout=30, check=True
        ).stdout.decode("utf-8")
    except FileNotFoundError:
        problem("sfeed is not installed: run `bash .ci/setup`")
        return
    rows = [line.split("\t") for line in out.split("\n") if line]
    expect(f"sfeed {path.name} rows", len(rows), len(EXPECT["entries"]))
    for row, want in zip(rows, EXPECT["entries"]):
        where = f"sfeed {path.name} {want['id']}"
        expect(f"{where} columns", len(row), 9)
        if len(row) < 9:
            continue
        # sfeed takes an Atom entry's <published> before its <updated>.
        expect(f"{where} timestamp", int(row[0]) if row[0] else None, want["published"])
        expect(f"{where} title", row[1], want["title"])
        expect(f"{where} link", row[2], want["url"])
        expect(f"{where} content type", row[4], "html")
        expect(f"{where} id", row[5], want["id"])
        expect(f"{where} categories", row[8].split("|") if row[8] else [], want["tags"])
        # sfeed escapes \n, \t and \\ inside fields.
        content = row[3].replace("\\n", "\n").replace("\\t", "\t").replace("\\\\", "\\")
        check_content(where, content, want)


def from_json_feed(path):
    """Expectations read back from feed.json, so RSS and Atom are checked against it."""
    feed = json.loads(path.read_text(encoding="utf-8"))

    def unix(s):
        return int(datetime.datetime.fromisoformat(s).timestamp())

    entries = [
        {
            "id": item["id"],
            "title": item["title"],
            "url": item["url"],
            "published": unix(item["date_published"]),
            "updated": unix(item.get("date_modified", item["date_published"])),
            "offset": item["date_published"][-6:],
            "tags": item.get("tags", []),
            "content_contains": [],
            "summary": item.get("summary", ""),
        }
        for item in feed["items"]
    ]
    return {
        "title": feed["title"],
        "language": feed["language"],
        "base_url": feed["home_page_url"],
        "updated": max([e["updated"] for e in entries], default=None),
        "entries": entries,
        "forbidden": ["view in browser", "{web_url}", "{unsubscribe_url}"],
    }


feeds = Path(sys.argv[1])
if len(sys.argv) > 2:
    EXPECT = json.loads(Path(sys.argv[2]).read_text(encoding="utf-8"))
else:
    EXPECT = from_json_feed(feeds / "feed.json")
check_parsed("rss", feeds / "rss.xml")
check_parsed("atom", feeds / "atom.xml")
check_rss_raw(feeds / "rss.xml")
check_atom_raw(feeds / "atom.xml")
check_json(feeds / "feed.json")
check_sfeed(feeds / "rss.xml")
check_sfeed(feeds / "atom.xml")

for p in problems:
    print(p)
print(f"{len(problems)} problem(s)")
sys.exit(1 if problems else 0)
