#!/usr/bin/env python3
"""The reference for `cargo bench --bench email`: build one `email.message.EmailMessage` per
subscriber (no SMTP, no network), the way a Python newsletter script would, from the text and
HTML gazette rendered, substituting each subscriber's unsubscribe URL and address. Prints the
rate in the bench's format.

usage: email_reference.py DIR COUNT   (DIR holds email.txt and email.html)"""

import base64
import hashlib
import hmac
import sys
import time
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from datetime import datetime, timezone

SAMPLE = "reader@digest.example.org"


def main():
    folder, count = sys.argv[1], int(sys.argv[2])
    text = open(f"{folder}/email.txt", encoding="utf-8").read()
    html = open(f"{folder}/email.html", encoding="utf-8").read()
    key = b"bench-secret-not-for-production"
    date = format_datetime(datetime(2023, 3, 31, 1, 0, tzinfo=timezone.utc))
    def token(email):
        tag = hmac.new(key, b"papers.digest.example.org\0" + email.encode(), hashlib.sha256)
        return (
            base64.urlsafe_b64encode(email.encode()).rstrip(b"=").decode()
            + "."
            + base64.urlsafe_b64encode(tag.digest()[:16]).rstrip(b"=").decode()
        )

    sample_token = token(SAMPLE)
    start = time.perf_counter()
    size = 0
    for i in range(count):
        email = f"reader{i}@example.net"
        name = f"读者 {i}" if i % 2 == 0 else ""
        t = token(email)
        url = f"https://digest.example.org/unsubscribe?token={t}"
        msg = EmailMessage()
        msg["From"] = Address("论文月刊", "digest", "digest.example.org")
        msg["To"] = Address(name, *email.split("@"))
        msg["Subject"] = "论文月刊 No. 3：三月份值得一读的十篇论文"
        msg["Date"] = date
        msg["Message-ID"] = "<%s@digest.example.org>" % hashlib.sha256(email.encode()).hexdigest()[:32]
        msg["List-Id"] = "<papers.digest.example.org>"
        msg["List-Unsubscribe"] = f"<{url}>, <mailto:unsubscribe@digest.example.org?subject=unsubscribe>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        personal = lambda s: s.replace(sample_token, t).replace(SAMPLE, email)
        msg.set_content(personal(text))
        msg.add_alternative(personal(html), subtype="html")
        size += len(msg.as_bytes(policy=SMTP))
    took = time.perf_counter() - start
    label = "Python EmailMessage (reference)"
    print(
        f"{label:<34} {count:>7} messages in {took:>7.3f} s = {count / took:>9.0f} messages/s "
        f"({size / count / 1024:.1f} KB each)"
    )


if __name__ == "__main__":
    main()
