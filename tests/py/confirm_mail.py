#!/usr/bin/env python3
"""Reads every message smtp-sink dumped into DIR with Python's email package and prints one
JSON list: for each message its recipient (smtp-sink's X-Rcpt-Args), headers, MIME parts,
defects, and the confirmation links of its text part and of its HTML part (`href`).

usage: confirm_mail.py DIR
"""

import email
import email.policy
import html.parser
import json
import os
import re
import sys


class Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.hrefs += [v for k, v in attrs if k == "href" and v]


out = []
for name in sorted(os.listdir(sys.argv[1])):
    with open(os.path.join(sys.argv[1], name), "rb") as f:
        raw = f.read()
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    rcpts = [v for k, v in msg.items() if k.lower() == "x-rcpt-args"]
    text = msg.get_body(("plain",))
    body_html = msg.get_body(("html",))
    text = text.get_content() if text is not None else ""
    body_html = body_html.get_content() if body_html is not None else ""
    links = Links()
    links.feed(body_html)
    out.append(
        {
            "file": name,
            "rcpt": [r.strip().strip("<>").split(">")[0] for r in rcpts],
            "to": str(msg["To"]),
            "from": str(msg["From"]),
            "subject": str(msg["Subject"]),
            "date": str(msg["Date"]) if msg["Date"] else None,
            "message_id": msg["Message-ID"],
            "auto_submitted": msg["Auto-Submitted"],
            "list_unsubscribe": msg["List-Unsubscribe"],
            "parts": [p.get_content_type() for p in msg.walk() if not p.is_multipart()],
            "defects": len(msg.defects) + sum(len(p.defects) for p in msg.walk()),
            "ascii": all(b < 128 for b in raw),
            "text": text,
            "text_links": re.findall(r"https?://\S+", text),
            "html_links": links.hrefs,
            "html_has_style": "style=" in body_html,
        }
    )
print(json.dumps(out))
