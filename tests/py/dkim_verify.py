#!/usr/bin/env python3
"""Verifies the DKIM signature of a message offline with dkimpy: the public key is read from a
PEM file and served through dkimpy's `dnsfunc` as the selector's TXT record.

usage: dkim_verify.py MESSAGE.eml PUBLIC_KEY.pem"""

import base64
import sys

import dkim


def txt_record(pem_path):
    pem = open(pem_path).read()
    der = base64.b64decode("".join(l for l in pem.splitlines() if not l.startswith("-----")))
    # An Ed25519 SubjectPublicKeyInfo is a fixed 12-byte prefix and the 32-byte key.
    if len(der) == 44 and der[:12] == bytes.fromhex("302a300506032b6570032100"):
        return b"v=DKIM1; k=ed25519; p=" + base64.b64encode(der[12:])
    return b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


def main():
    message = open(sys.argv[1], "rb").read()
    record = txt_record(sys.argv[2])
    asked = []

    def dnsfunc(name, timeout=5):
        asked.append(name)
        return record

    d = dkim.DKIM(message)
    ok = d.verify(dnsfunc=dnsfunc)
    print(f"verified={ok} asked={asked} signed={d.include_headers if hasattr(d, 'include_headers') else ''}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
