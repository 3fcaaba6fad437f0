"""Client threads for fault tests over a real server: readers that cycle over paths and writers
that send feedback with an Idempotency-Key and retry each write with its key until it is
acknowledged, as a careful client does. Every answer is recorded."""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class Answer:
    start: float  # time.monotonic() when sent
    elapsed: float
    status: int  # 0: the connection failed
    content_type: str
    served_from: str | None  # the Served-From header
    retry_after: str | None
    path: str
    body: bytes

    @property
    def end(self) -> float:
        return self.start + self.elapsed


class Traffic:
    def __init__(self, port: int, tokens: dict[int, str], timeout_s: float = 10.0):
        self.port, self.tokens, self.timeout_s = port, tokens, timeout_s
        self.answers: list[Answer] = []
        self.acked: dict[int, list[str]] = {
            uid: [] for uid in tokens
        }  # event ids acknowledged, per user
        self.pending: dict[
            int, str
        ] = {}  # a write not yet acknowledged when the traffic stopped: its key
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    def _call(
        self, conn, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ):
        start = time.monotonic()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            res = conn.getresponse()
            data, status = res.read(), res.status
            ctype, served, retry = (
                res.getheader("Content-Type", ""),
                res.getheader("Served-From"),
                res.getheader("Retry-After"),
            )
        except (OSError, http.client.HTTPException):
            conn.close()
            data, status, ctype, served, retry = b"", 0, "", None, None
        answer = Answer(start, time.monotonic() - start, status, ctype, served, retry, path, data)
        with self.lock:
            self.answers.append(answer)
        return answer

    def _connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout_s)

    def reader(self, paths: list[str], pause_s: float = 0.01) -> None:
        conn = self._connection()
        k = 0
        while not self.stop.is_set():
            self._call(conn, "GET", paths[k % len(paths)])
            k += 1
            time.sleep(pause_s)

    def writer(
        self, user_id: int, movies: tuple[int, ...] = (1, 2, 3), pause_s: float = 0.02
    ) -> None:
        conn = self._connection()
        k = 0
        while not self.stop.is_set():
            action = ("like", "dislike", "not_interested")[k % 3]
            body = json.dumps({"movieId": movies[k % len(movies)], "action": action}).encode()
            key = uuid.uuid4().hex
            headers = {
                "Content-Type": "application/json",
                "Authorization": f"Bearer {self.tokens[user_id]}",
                "Idempotency-Key": key,
            }
            self.pending[user_id] = key
            while not self.stop.is_set():  # the same write, with its key, until it is acknowledged
                answer = self._call(conn, "POST", f"/user/{user_id}/feedback", body, headers)
                if answer.status == 200:
                    with self.lock:
                        self.acked[user_id].append(json.loads(answer.body)["event"]["id"])
                    self.pending.pop(user_id, None)
                    break
                time.sleep(0.05)
            k += 1
            time.sleep(pause_s)

    def start(self, readers: list[list[str]], writers: list[int]) -> None:
        self.threads = [threading.Thread(target=self.reader, args=(paths,)) for paths in readers]
        self.threads += [threading.Thread(target=self.writer, args=(uid,)) for uid in writers]
        for t in self.threads:
            t.start()

    def finish(self) -> list[Answer]:
        self.stop.set()
        for t in self.threads:
            t.join(30)
        return sorted(self.answers, key=lambda a: a.start)


def p99(values: list[float]) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(0.99 * len(values)))]


def errors_in_log(path) -> str:
    """The tracebacks and error lines of a server's log (for assertion messages)."""
    lines = path.read_text(errors="replace").splitlines()
    keep = [
        i
        for i, line in enumerate(lines)
        if "Traceback" in line or "ERROR" in line or "Error" in line
    ]
    return "\n".join("\n".join(lines[i : i + 25]) for i in keep[:3]) or "\n".join(lines[-20:])
