#!/usr/bin/env python3
"""The reference for bench/inbound.sh: Python's own `email` parser over the same Maildir.

Each message is parsed with email.message_from_binary_file(policy=default) and every part is
walked (its content type read, a leaf's payload decoded), which is the parsing part of what
`gazette inbound` does before it applies its rules. Prints the message count.

usage: bench/inbound_email.py MAILDIR
"""
import email
import email.policy
import os
import sys


def main() -> None:
    new = os.path.join(sys.argv[1], "new")
    count = 0
    for name in sorted(os.listdir(new)):
        with open(os.path.join(new, name), "rb") as f:
            msg = email.message_from_binary_file(f, policy=email.policy.default)
        for part in msg.walk():
            part.get_content_type()
            if not part.is_multipart():
                part.get_payload(decode=True)
        count += 1
    print(count)


if __name__ == "__main__":
    main()
