"""`smcn serve` in a child process, for scripts and tests that need a real server process."""

import os
import re
import subprocess
import sys

# The repository root: the child imports `smcn_tf` from here.
_REPOSITORY = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
)


def start_serve_process(model_base_path, host="127.0.0.1", poll_seconds=0.0):
    """`smcn serve` in a child process on free loopback ports.

    Args:
        model_base_path: the `<export base>/<model name>` directory to serve.
        host: the address to bind.
        poll_seconds: how often the server looks for new versions (0: never).

    Returns:
        `(process, grpc_target, rest_host, rest_port)`. The caller stops the
        process; its stdout is left open after the start-up lines.

    Raises:
        SystemExit: the server did not start (with what it printed).
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "smcn_tf.serving.local.commands", "serve", "--model-base-path",
         model_base_path, "--host", host, "--port", "0", "--rest-port", "0",
         "--poll-seconds", str(poll_seconds)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env=dict(os.environ, PYTHONPATH=_REPOSITORY),
    )
    text = ""
    for line in process.stdout:
        text += line
        if line.startswith("REST listening"):
            break
    grpc_match = re.search(r"gRPC listening on (\S+)", text)
    rest_match = re.search(r"REST listening on http://(\S+):(\d+)", text)
    if not (grpc_match and rest_match):
        process.kill()
        process.wait()
        raise SystemExit(f"smcn serve did not start:\n{text}")
    return process, grpc_match.group(1), rest_match.group(1), int(rest_match.group(2))
