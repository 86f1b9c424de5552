"""Helpers for the e-mail tests: a real SMTP server on 127.0.0.1 (aiosmtpd) that keeps what
it receives and can be told to refuse recipients, and readers for the outbox."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from pathlib import Path

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Recorder:
    """aiosmtpd handler: every accepted message (envelope and parsed), refusing the
    recipients in ``refuse`` with 550."""

    def __init__(self):
        self.messages: list[dict] = []
        self.refuse: set[str] = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(
            {
                "mail_from": envelope.mail_from,
                "rcpt_tos": list(envelope.rcpt_tos),
                "message": parse(envelope.original_content or envelope.content),
            }
        )
        return "250 Message accepted for delivery"


class SmtpServer:
    def __init__(self):
        self.handler = Recorder()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()

    @property
    def messages(self):
        return self.handler.messages


class SilentServer:
    """Accepts TCP connections and never answers: an SMTP server that times out."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.stop = threading.Event()

    def __enter__(self):
        def accept():
            self.sock.settimeout(0.2)
            while not self.stop.is_set():
                try:
                    self.conns.append(self.sock.accept()[0])
                except OSError:
                    continue

        self.thread = threading.Thread(target=accept, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        for conn in self.conns:
            conn.close()
        self.sock.close()


def parse(data: bytes):
    return email.message_from_bytes(data, policy=email.policy.default)


def outbox_files(app) -> list[Path]:
    return sorted(Path(app.config["MAIL_OUTBOX_DIR"]).rglob("*.eml"))


def smtp_config(port: int, **extra) -> dict:
    return {"MAIL_TRANSPORT": "smtp", "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": port,
            "MAIL_TIMEOUT": 2, "MAIL_RETRY_SECONDS": 60, **extra}  # fmt: skip
