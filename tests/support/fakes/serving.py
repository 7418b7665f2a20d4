"""A standard-library HTTP server for tests, answering on its own thread until ``close()``.

    serving = Serving(ThreadingHTTPServer(("127.0.0.1", 0), Handler))
    serving.port                 # the free port it bound
    serving.close()              # shutdown, close the socket, join the thread; twice is fine

Handler threads are daemon threads unless told otherwise (a handler stuck on a hanging page must
not hold up the end of a test run; ``daemon_threads=False`` makes ``close()`` wait for them).
"""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer


class Serving:
    def __init__(
        self, server: ThreadingHTTPServer, *, daemon_threads: bool = True, poll_interval: float = 0.05
    ) -> None:
        self.server = server
        server.daemon_threads = daemon_threads
        self._thread = threading.Thread(target=server.serve_forever, args=(poll_interval,), daemon=True)
        self._thread.start()
        self._closed = False

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
