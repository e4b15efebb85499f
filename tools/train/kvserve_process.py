"""kvserve and kvserve-cli as child processes, for the scripts and tests that check trained models
through the real binaries (tests/models/check_models.py, tools/train/quality.py).

A Server listens on 127.0.0.1 port 0 with metrics and the HTTP API off (their fixed default ports
would collide between servers running at once); its port is read from kvserve's
"kvserve listening on ... (port N)" log line. Not thread-safe; one Server per `with` block.
"""

import json
import pathlib
import re
import subprocess
import tempfile
import time

START_TIMEOUT_S = 60  # a limit on waiting for the server to come up, never an assertion


class Server:
    """build/server/kvserve ARGS as a child process; `port` once it listens."""

    def __init__(self, build, args, env=None):
        self.build = pathlib.Path(build)
        self.log = tempfile.NamedTemporaryFile(prefix="kvserve-models-", suffix=".log")
        self.proc = subprocess.Popen(
            [str(self.build / "server" / "kvserve"), "--listen=127.0.0.1:0",
             "--metrics-address=", "--http-address=", *args], stdout=subprocess.DEVNULL,
            stderr=self.log, env=env)
        deadline = time.monotonic() + START_TIMEOUT_S
        self.port = None
        while self.port is None:
            match = re.search(r"kvserve listening on .* \(port (\d+)\)", self.text())
            if match:
                self.port = int(match.group(1))
            elif self.proc.poll() is not None or time.monotonic() > deadline:
                log = self.text()  # before close() deletes the file
                self.close()
                raise RuntimeError("kvserve did not start:\n" + log)
            else:
                time.sleep(0.1)

    def text(self):
        """The server's log so far."""
        return pathlib.Path(self.log.name).read_text(errors="replace")

    def cli_command(self, command, *args):
        """The argv of `kvserve-cli COMMAND --target=<this server> ARGS`."""
        return [str(self.build / "tools" / "cli" / "kvserve-cli"), command,
                f"--target=127.0.0.1:{self.port}", *args]

    def cli(self, command, *args):
        """Runs kvserve-cli against this server: (stdout, stderr); raises when it fails."""
        proc = subprocess.run(self.cli_command(command, *args), capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"kvserve-cli {command} {' '.join(args)} failed "
                               f"({proc.returncode}):\n{proc.stderr}")
        return proc.stdout, proc.stderr

    def score(self, ids):
        """kvserve-cli score --token-ids: the JSON object it prints."""
        out, _ = self.cli("score", "--token-ids=" + ",".join(map(str, ids)))
        return json.loads(out)

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()
        self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
