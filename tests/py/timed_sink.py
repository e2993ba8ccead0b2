#!/usr/bin/env python3
"""An SMTP sink (aiosmtpd) that logs every command with the wall-clock time it arrived.

usage: timed_sink.py PORT LOG DELAY_MS

Each line of LOG is JSON {"t": seconds since the epoch, "ev": EVENT, "rcpt": address or null,
"conn": connection number}, written and flushed before the reply, for EVENT in ehlo, mail,
rcpt, rset and msg (a message accepted after its final dot). DELAY_MS is slept before the
reply to each final dot, to slow a send down. Prints "ready" once it listens.
"""

import asyncio
import itertools
import json
import sys
import time

from aiosmtpd.controller import Controller

port, log_path, delay = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]) / 1000
log = open(log_path, "a", buffering=1)
numbers = itertools.count(1)


def record(session, ev, rcpt=None):
    if not hasattr(session, "number"):
        session.number = next(numbers)
    log.write(json.dumps({"t": time.time(), "ev": ev, "rcpt": rcpt, "conn": session.number}) + "\n")
    log.flush()


class Handler:
    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        record(session, "ehlo")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        record(session, "mail")
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        record(session, "rcpt", address)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_RSET(self, server, session, envelope):
        record(session, "rset")
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        record(session, "msg", envelope.rcpt_tos[0])
        if delay > 0:
            await asyncio.sleep(delay)
        return "250 2.0.0 OK queued"


ctl = Controller(Handler(), hostname="127.0.0.1", port=port, ready_timeout=10)
ctl.start()
print("ready", flush=True)
deadline = time.time() + 600  # never outlive a test run by much
while time.time() < deadline:
    time.sleep(0.5)
ctl.stop()
