"""A scriptable SMTP server on 127.0.0.1 for the delivery tests (aiosmtpd).

Run: python smtp_server.py LOG_FILE SCRIPT_JSON [--auth-fails]
Prints "PORT <n>" once listening. Each connection takes the next attempt from the script
(a JSON list); after the script runs out, everything is accepted. An attempt is an object
with at most one of:
  {"connect": "421 4.7.0 try again later"}   answered instead of the greeting, then closed
  {"rcpt": "550 5.1.1 user unknown"}          answer to RCPT TO
  {"end": "451 4.4.2 timeout"}                answer to the final dot
  {"end": "close"}                            connection dropped after the dot, no answer
Every message that reaches the final dot is appended to LOG_FILE as one JSON line with the
attempt number, the answer, the envelope and the raw message.
"""

import asyncio
import json
import socket
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult

STATE = {"attempt": 0, "script": []}
LOCK = threading.Lock()


def next_attempt():
    with LOCK:
        STATE["attempt"] += 1
        script = STATE["script"]
        step = script.pop(0) if script else {}
        return STATE["attempt"], step


class ScriptedSMTP(SMTP):
    async def _handle_client(self):
        self.attempt, self.step = next_attempt()
        if "connect" in self.step:
            await self.push(self.step["connect"])
            self.transport.close()
            return
        await super()._handle_client()


class Recorder:
    def __init__(self, log_path):
        self.log_path = log_path

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        answer = server.step.get("rcpt")
        if answer:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        answer = server.step.get("end", "250 2.0.0 queued")
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(json.dumps({
                "attempt": server.attempt,
                "answer": answer,
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "message": envelope.content.decode("utf-8", "replace"),
            }) + "\n")
        if answer == "close":
            server.transport.abort()
            return "250 unused"
        return answer


def refuse_login(server, session, envelope, mechanism, auth_data):
    return AuthResult(success=False, handled=False, message="535 5.7.8 authentication failed")


class ScriptedController(Controller):
    def factory(self):
        return ScriptedSMTP(self.handler, **self.SMTP_kwargs)


def main():
    log_path, script = sys.argv[1], json.loads(sys.argv[2])
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    options = {}
    if "--auth-fails" in sys.argv:
        options = {"authenticator": refuse_login, "auth_require_tls": False, "auth_required": True}
    controller = ScriptedController(Recorder(log_path), hostname="127.0.0.1", port=port, **options)
    controller.start()
    # start() opened one connection to check the server is up; it takes no scripted step.
    with LOCK:
        STATE["script"] = script
        STATE["attempt"] = 0
    print(f"PORT {port}", flush=True)
    try:
        asyncio.run(asyncio.Event().wait())
    finally:
        controller.stop()


if __name__ == "__main__":
    sys.exit(main())
