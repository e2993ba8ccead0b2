#!/usr/bin/env python3
"""Parses each .eml given with Python's email package (policy=default) and fails on anything
a careful receiver would object to: parse defects, a structure other than multipart/alternative
with text/plain then text/html, a missing list or identity header, a non-ASCII byte in the
header section, a line over 998 octets. Prints one JSON object per message with the decoded
headers and parts, for the Rust test to assert on."""

import base64
import email
import email.policy
import quopri
import json
import sys

REQUIRED = [
    "From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "List-Id",
    "List-Unsubscribe", "List-Unsubscribe-Post",
]


def check(path):
    raw = open(path, "rb").read()
    problems = []
    head, sep, _ = raw.partition(b"\r\n\r\n")
    if not sep:
        problems.append("no blank line between header and body (CRLF)")
    if any(b > 127 for b in head):
        problems.append("header section has non-ASCII bytes")
    for n, line in enumerate(raw.split(b"\r\n"), 1):
        if len(line) > 998:
            problems.append(f"line {n} has {len(line)} octets")
    if b"\n" in raw.replace(b"\r\n", b""):
        problems.append("a bare LF")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    for part in msg.walk():
        for d in part.defects:
            problems.append(f"defect in {part.get_content_type()}: {d!r}")
        for name, value in part.items():
            for d in getattr(value, "defects", ()):
                problems.append(f"defect in header {name}: {d!r}")
    for name in REQUIRED:
        if len(msg.get_all(name, [])) != 1:
            problems.append(f"{name}: {len(msg.get_all(name, []))} times")
    if msg.get_content_type() != "multipart/alternative":
        problems.append(f"top level is {msg.get_content_type()}")
    parts = list(msg.iter_parts()) if msg.is_multipart() else []
    types = [p.get_content_type() for p in parts]
    if types != ["text/plain", "text/html"]:
        problems.append(f"parts are {types}")
    for p in parts:
        if p.get_content_charset() != "utf-8":
            problems.append(f"{p.get_content_type()} charset {p.get_content_charset()}")
    if msg["List-Unsubscribe-Post"] != "List-Unsubscribe=One-Click":
        problems.append("List-Unsubscribe-Post is not One-Click")
    unsub = str(msg["List-Unsubscribe"] or "")
    if "<https://" not in unsub or "<mailto:" not in unsub:
        problems.append(f"List-Unsubscribe lacks https or mailto: {unsub}")
    encodings = []
    for p in parts:
        cte = str(p.get("Content-Transfer-Encoding", "")).lower()
        wire = p.get_payload(decode=False)
        decoded = p.get_payload(decode=True) or b""
        if cte == "base64" and any(len(l) > 76 for l in wire.splitlines()):
            problems.append(f"{p.get_content_type()}: a base64 line over 76 characters")
        encodings.append({
            "type": p.get_content_type(),
            "cte": cte,
            # 8bit text comes back decoded (or as surrogate escapes of its bytes).
            "wire_bytes": len(wire.encode("utf-8", "surrogateescape")),
            "decoded_bytes": len(decoded),
            # What each encoding would take, by Python's encoders.
            "qp_bytes": len(quopri.encodestring(decoded).replace(b"\n", b"\r\n")),
            "base64_bytes": len(base64.encodebytes(decoded).replace(b"\n", b"\r\n")),
        })
    to = msg["To"]
    frm = msg["From"]
    return {
        "path": path,
        "problems": problems,
        "size": len(raw),
        "encodings": encodings,
        "headers": [k for k, _ in msg.items()],
        "subject": str(msg["Subject"]),
        "to_name": to.addresses[0].display_name if to and to.addresses else None,
        "to_address": to.addresses[0].addr_spec if to and to.addresses else None,
        "from_name": frm.addresses[0].display_name if frm and frm.addresses else None,
        "message_id": str(msg["Message-ID"]),
        "date": str(msg["Date"]),
        "list_unsubscribe": unsub,
        "text": parts[0].get_content() if len(parts) > 0 else None,
        "html": parts[1].get_content() if len(parts) > 1 else None,
    }


if __name__ == "__main__":
    results = [check(p) for p in sys.argv[1:]]
    print(json.dumps(results, ensure_ascii=False))
    sys.exit(1 if any(r["problems"] for r in results) else 0)
