"""A TCP proxy between the clinic sender and the county service that breaks the link on purpose:
``down`` (connections refused: reset at once), ``stall`` (accepted, nothing forwarded), ``reset``
(every connection reset after a few KiB), random mid-transfer resets (``drop_rate``: per connection;
``segment_drop_rate``: per 16 KiB forwarded — a lost segment on a real link ends as a broken
connection) and a bandwidth cap (a shaping proxy: ``rate_bytes_s`` per direction)."""

from __future__ import annotations

import random
import socket
import struct
import threading
import time

MODES = ("up", "down", "stall", "reset")
SEGMENT = 16 * 1024


class Pacer:
    def __init__(self, rate_bytes_s: float | None):
        self.rate, self.next_free, self.lock = rate_bytes_s, time.monotonic(), threading.Lock()

    def wait(self, n: int) -> None:
        if not self.rate:
            return
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_free)
            self.next_free = start + n / self.rate
            delay = self.next_free - now
        time.sleep(max(0.0, delay))


class FaultProxy:
    def __init__(
        self,
        target_port: int,
        drop_rate: float = 0.0,
        rate_bytes_s: float | None = None,
        seed: int = 0,
        segment_drop_rate: float = 0.0,
    ):
        self.target_port, self.drop_rate, self.segment_drop_rate = target_port, drop_rate, segment_drop_rate
        self.mode = "up"
        self.rng = random.Random(seed)
        self.up_pacer, self.down_pacer = Pacer(rate_bytes_s), Pacer(rate_bytes_s)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.stats = {"connections": 0, "refused": 0, "stalled": 0, "reset": 0, "bytes_up": 0, "bytes_down": 0}
        self._stop = threading.Event()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_mode(self, mode: str) -> None:
        assert mode in MODES
        previous, self.mode = self.mode, mode
        if mode != "up" or previous == "stall":  # a link going down (or back up) breaks what is in flight
            with self._lock:
                for sock in list(self._open):
                    _reset(sock)
                self._open.clear()

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        with self._lock:
            for sock in list(self._open):
                _reset(sock)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.stats["connections"] += 1
            mode = self.mode
            if mode == "down":
                self.stats["refused"] += 1
                _reset(client)
                continue
            if mode == "stall":
                self.stats["stalled"] += 1
                self._track(client)  # held open, never forwarded, until the link changes
                continue
            budget = (
                self.rng.randint(512, 64 * 1024) if (mode == "reset" or self.rng.random() < self.drop_rate) else None
            )
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            self._track(client, upstream)
            shared = {"budget": budget}
            threading.Thread(
                target=self._pump, args=(client, upstream, self.up_pacer, "bytes_up", shared), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(upstream, client, self.down_pacer, "bytes_down", shared), daemon=True
            ).start()

    def _track(self, *socks: socket.socket) -> None:
        with self._lock:
            self._open.update(socks)

    def _pump(self, src: socket.socket, dst: socket.socket, pacer: Pacer, counter: str, shared: dict) -> None:
        try:
            while True:
                data = src.recv(16 * 1024)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                if self.segment_drop_rate:  # one draw per 16 KiB forwarded, however the reads split them
                    before = shared.setdefault(counter, 0)
                    shared[counter] = before + len(data)
                    for _ in range(shared[counter] // SEGMENT - before // SEGMENT):
                        if self.rng.random() < self.segment_drop_rate:
                            self.stats["reset"] += 1
                            raise ConnectionResetError("injected segment loss")
                if shared["budget"] is not None:
                    shared["budget"] -= len(data)
                    if shared["budget"] < 0:
                        self.stats["reset"] += 1
                        raise ConnectionResetError("injected reset")
                pacer.wait(len(data))
                dst.sendall(data)
                self.stats[counter] += len(data)
        except OSError:
            for sock in (src, dst):
                _reset(sock)
            with self._lock:
                self._open.difference_update((src, dst))


def _reset(sock: socket.socket) -> None:
    try:  # SO_LINGER 0: close sends RST, as a dropped 4G link or a middlebox would
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
