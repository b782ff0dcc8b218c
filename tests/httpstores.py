"""Zarr stores served over HTTP on loopback, well or badly (for the remote-store tests)."""

from __future__ import annotations

import functools
import http.server
import socket
import threading
from contextlib import contextmanager


class _Handler(http.server.SimpleHTTPRequestHandler):
    listing = True

    def log_message(self, *args):
        pass

    def list_directory(self, path):
        if not self.listing:  # a static host without directory listings (S3 website, nginx default)
            self.send_error(403, "Directory listing forbidden")
            return None
        return super().list_directory(path)


@contextmanager
def served(directory: str, listing: bool = True):
    """Serve ``directory`` at the yielded http://127.0.0.1:PORT URL."""
    handler = type("Handler", (_Handler,), {"listing": listing})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=directory))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def silent():
    """A server that accepts connections and never answers; yields its URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held, stop = [], threading.Event()

    def accept():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()
