#!/usr/bin/env python3
"""A real SMTP server (aiosmtpd) with scripted faults, for gazette's send tests.

usage: smtp_server.py PORT LOG MODE [SEED]

Every accepted message is appended to LOG as one JSON line {"rcpt", "message_id", "size"}
(written and flushed before the 250 reply); every RCPT is logged as {"rcpt_attempt"}.
Prints "ready" on standard output once it listens. Every mode but "ok" announces PIPELINING.
Modes:

  ok          accept everything
  random4xx   451 to ~25% of RCPTs and 452 to ~25% of final dots (not accepted), at most 3
              faults per recipient
  reject      RCPT unknown*@ -> 550 5.1.1; final dot for spam*@ -> 554 5.7.1
  disconnect  for cut*@, the first time: drop the connection with the message unread (reset);
              for drop*@, the first time: read the message and its final dot, then hang up
  421         for late*@, the first time: store the message, then reply 421 to the final dot
  stall       for stall*@: never reply to the final dot
  drip        for drip*@, the first time: store the message, then send the reply to its final
              dot one byte per second (a 60-byte line: a minute)
  long        for long*@, the first time: answer RCPT with 100,000 "250-" continuation lines
  slow        store every message, then wait 0.5 s before the 250 to its final dot
  badsender   553 5.1.8 to every MAIL FROM (the sender's domain "does not exist")
  norelay     554 5.7.1 Relay access denied to every RCPT
  auth        require AUTH and refuse every password
  badcert     offer STARTTLS with a self-signed certificate (no client should trust it)
"""

import asyncio
import os
import ssl
import subprocess
import tempfile
import email
import email.policy
import hashlib
import json
import random
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult

port, log_path, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
rng = random.Random(int(sys.argv[4]) if len(sys.argv) > 4 else 1)
log = open(log_path, "a", buffering=1)
seen_once = set()
faults = {}  # random4xx: faults injected per recipient, at most 3 (gazette tries up to 8 times)


def fault(rcpt):
    if rng.random() < 0.25 and faults.get(rcpt, 0) < 3:
        faults[rcpt] = faults.get(rcpt, 0) + 1
        return True
    return False


def record(obj):
    log.write(json.dumps(obj) + "\n")
    log.flush()


def first_time(kind, rcpt):
    key = (kind, rcpt)
    if key in seen_once:
        return False
    seen_once.add(key)
    return True


class Handler:
    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # aiosmtpd reads pipelined commands fine but does not say so; announce it (except
        # in "ok" mode, so the one-command-at-a-time path is exercised too).
        session.host_name = hostname
        if mode == "ok":
            return responses
        return responses[:-1] + ["250-PIPELINING"] + responses[-1:]

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if mode == "badsender":
            return "553 5.1.8 <%s>: Sender address rejected: Domain not found" % address
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        record({"rcpt_attempt": address})
        if mode == "norelay":
            return "554 5.7.1 <%s>: Relay access denied" % address
        local = address.split("@")[0]
        if mode == "random4xx" and fault(address):
            return "451 4.3.0 try again later"
        if mode == "long" and local.startswith("long") and first_time("long", address):
            envelope.rcpt_tos.append(address)
            return "\r\n".join(["250-still thinking"] * 100000 + ["250 OK"])
        if mode == "reject" and local.startswith("unknown"):
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        rcpt = envelope.rcpt_tos[0]
        local = rcpt.split("@")[0]
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        if mode == "random4xx" and fault(rcpt):
            return "452 4.3.1 insufficient system storage"
        if mode == "reject" and local.startswith("spam"):
            return "554 5.7.1 message rejected as spam"
        if mode == "stall" and local.startswith("stall"):
            await asyncio.sleep(3600)
        entry = {
            "rcpt": rcpt,
            "message_id": msg["Message-ID"],
            "date": msg["Date"],
            "sha256": hashlib.sha256(envelope.content).hexdigest(),
            "to": msg["To"],
            "subject": msg["Subject"],
            "size": len(envelope.content),
            "defects": len(msg.defects),
        }
        record(entry)
        if mode == "slow":
            await asyncio.sleep(0.5)
        if mode == "drip" and local.startswith("drip") and first_time("drip", rcpt):
            reply = "250 2.0.0 " + "x" * 50
            for b in reply[:-1]:
                if server.transport.is_closing():
                    break
                server.transport.write(b.encode())
                await asyncio.sleep(1)
            return reply[-1]
        if mode == "421" and local.startswith("late") and first_time("421", rcpt):
            # Stored, but the client is told the service is closing.
            return "421 4.3.2 service shutting down"
        return "250 2.0.0 OK queued"


class Faulty(SMTP):
    async def smtp_DATA(self, arg):
        rcpts = self.envelope.rcpt_tos if self.envelope else []
        local = rcpts[0].split("@")[0] if rcpts else ""
        if mode == "disconnect" and local.startswith("cut") and first_time("cut", rcpts[0]):
            # Stop reading, let the client write its message into our socket buffer, then
            # drop the connection with it unread (the kernel answers with a reset).
            self.transport.pause_reading()
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            await asyncio.sleep(0.3)
            self.transport.abort()
            return
        if mode == "disconnect" and local.startswith("drop") and first_time("drop", rcpts[0]):
            # Read the whole message, final dot included, then hang up without a reply:
            # the client cannot know whether it was stored.
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            while await self._reader.readline() not in (b".\r\n", b""):
                pass
            self.transport.close()
            return
        return await super().smtp_DATA(arg)


def refuse(server, session, envelope, mechanism, auth_data):
    return AuthResult(success=False, handled=False)


class Ctl(Controller):
    def factory(self):
        return Faulty(self.handler, **self.SMTP_kwargs)


kwargs = {"enable_SMTPUTF8": True}
if mode == "auth":
    kwargs.update(auth_required=True, auth_require_tls=False, authenticator=refuse)
if mode == "badcert":
    d = tempfile.mkdtemp()
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    kwargs.update(tls_context=context)
ctl = Ctl(Handler(), hostname="127.0.0.1", port=port, ready_timeout=10, **kwargs)
ctl.start()
print("ready", flush=True)
deadline = time.time() + 600  # never outlive a test run by much
while time.time() < deadline:
    time.sleep(0.5)
ctl.stop()
