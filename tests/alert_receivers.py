"""Real notification receivers for the tests: an HTTP server and an SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebhookReceiver:
    """Records every POST (path, headers, JSON body). ``status`` is what it answers; with
    ``kill_pid`` set it SIGKILLs that process on receipt, before answering: the message has
    reached the receiver, the sender never learns it."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.status = 200
        self.kill_pid: int | None = None
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                owner.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
                if owner.kill_pid is not None:
                    os.kill(owner.kill_pid, signal.SIGKILL)
                    owner.kill_pid = None
                    return
                self.send_response(owner.status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def bodies(self) -> list[dict]:
        return [r["body"] for r in self.requests]

    def keys(self) -> list[str]:
        return [r["headers"]["Idempotency-Key"] for r in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SmtpReceiver:
    """A real SMTP server (aiosmtpd) recording each message."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list = []
        owner = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802
                msg = message_from_bytes(envelope.content, policy=policy.default)
                owner.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos), "msg": msg})
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()
