"""The app served by `nimbus up --build` on a free port, with a fresh state
folder, and real requests to it.

Run with `python3 -m unittest discover -s tests`. The server is the `nimbus`
on PATH, or the one `NIMBUS=/path/to/nimbus` names; its log is kept to
warnings unless NIMBUS_LOG says otherwise. Compiled components are kept where
`nimbus up` keeps them (`.nimbus/cache`, or NIMBUS_CACHE_DIR), so an
unchanged component starts at once.
"""

import os
import subprocess
import tempfile
import threading
import unittest
import urllib.error
import urllib.request

APP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class App:
    """`nimbus up --build` on this app, until `stop()`."""

    def __init__(self):
        self._state = tempfile.TemporaryDirectory(prefix="nimbus-test-")
        nimbus = os.environ.get("NIMBUS", "nimbus")
        cache = os.environ.get("NIMBUS_CACHE_DIR", os.path.join(APP, ".nimbus", "cache"))
        env = dict(os.environ, NIMBUS_LOG=os.environ.get("NIMBUS_LOG", "warn"))
        self._server = subprocess.Popen(
            [nimbus, "up", APP, "--build", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
             "--state-dir", self._state.name, "--cache-dir", cache],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, env=env,
        )
        line = self._server.stdout.readline()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"`{nimbus} up {APP}` did not start: its log above says why")
        self.url = line.removeprefix("listening on ").strip()
        # Keep reading, so the server never blocks writing to its stdout.
        threading.Thread(target=self._server.stdout.read, daemon=True).start()

    def get(self, path: str):
        """The status and body of `GET path`."""
        try:
            with urllib.request.urlopen(self.url + path) as reply:
                return reply.status, reply.read().decode()
        except urllib.error.HTTPError as reply:
            return reply.code, reply.read().decode()

    def stop(self):
        self._server.terminate()
        self._server.wait()
        self._state.cleanup()


class HelloTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.app = App()

    @classmethod
    def tearDownClass(cls):
        cls.app.stop()

    def test_greets_and_counts_visits(self):
        self.assertEqual(self.app.get("/hello/ada"), (200, "Hello, ada! (visit 1)\n"))
        self.assertEqual(self.app.get("/hello/ada"), (200, "Hello, ada! (visit 2)\n"))
        self.assertEqual(self.app.get("/hello/bob"), (200, "Hello, bob! (visit 1)\n"))

    def test_an_unknown_path_is_404(self):
        status, _ = self.app.get("/nope")
        self.assertEqual(status, 404)


if __name__ == "__main__":
    unittest.main()
