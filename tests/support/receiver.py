"""A real HTTP receiver for webhook tests, on a loopback port the system picks (tests run side by side
under pytest-xdist, so no fixed port).

It records every request (path, headers, raw body) and answers with the statuses it is given in
turn (200 once they run out). ``hold`` makes it keep each request open until the test releases it,
as a hanging receiver would.
"""

from __future__ import annotations

import dataclasses
import http.server
import threading
from collections.abc import Iterator

import pytest


@dataclasses.dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.statuses: list[int] = []
        self.hold = threading.Event()
        self.release = threading.Event()
        self.arrived = threading.Event()
        self.answered = threading.Condition()
        self.answers = 0
        self.server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/in?team=growth"

    def start(self) -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
                receiver.arrived.set()
                if receiver.hold.is_set():
                    receiver.release.wait(timeout=30)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                answer = f"answer {status}".encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
                with receiver.answered:
                    receiver.answers += 1
                    receiver.answered.notify_all()

            def log_message(self, *args) -> None:  # quiet
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_answers(self, count: int, timeout: float) -> bool:
        """Wait until this receiver has answered ``count`` requests; False when the time ran out."""
        with self.answered:
            return self.answered.wait_for(lambda: self.answers >= count, timeout=timeout)

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.start()
    yield receiver
    receiver.stop()
