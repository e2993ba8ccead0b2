#!/usr/bin/env python3
"""Parses every message smtp-sink dumped into DIR with Python's email package.

usage: check_sink.py DIR
Prints one JSON object: {"messages": [{"rcpt", "message_id", "to", "parts", "defects"}], ...}
where rcpt comes from smtp-sink's X-Rcpt-Args record.
"""

import email
import email.policy
import json
import os
import sys

out = []
for name in sorted(os.listdir(sys.argv[1])):
    with open(os.path.join(sys.argv[1], name), "rb") as f:
        raw = f.read()
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    rcpts = [v for k, v in msg.items() if k.lower() == "x-rcpt-args"]
    parts = [p.get_content_type() for p in msg.walk() if not p.is_multipart()]
    texts = [p.get_content() for p in msg.walk() if p.get_content_type() == "text/plain"]
    out.append(
        {
            "file": name,
            "rcpt": [r.strip().strip("<>").split(">")[0] for r in rcpts],
            "message_id": msg["Message-ID"],
            "to": str(msg["To"]),
            "subject": str(msg["Subject"]),
            "parts": parts,
            "text_chars": sum(len(t) for t in texts),
            "defects": len(msg.defects),
        }
    )
print(json.dumps({"messages": out}))
