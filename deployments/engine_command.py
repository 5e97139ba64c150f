"""The process worker's command for each flow run (prefect.yaml): hand the run to this host's warm engine.

It must cost milliseconds, so it imports nothing beyond the standard library and reads its one setting,
`AVATAR_CRM_ENGINE_SOCKET`, straight from the environment the worker gives it (the settings object would
import pydantic for it). With a warm engine listening there (deployments/warm_engine.py), the run is a
fork of it and this process stays as its stand-in: the worker's signals are passed on, its exit code is
the run's. With none, or when the engine hands the run back, it becomes Prefect's own engine command,
`python -m prefect.engine`, exactly what the worker would otherwise have run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys

SOCKET_ENV = "AVATAR_CRM_ENGINE_SOCKET"
HEADER = struct.Struct("!i")  # the request's length, then the run's exit code
COLD = -1000  # the engine's answer when this run is not for its code: run it cold


def run_cold() -> None:
    os.execv(sys.executable, [sys.executable, "-m", "prefect.engine", *sys.argv[1:]])  # noqa: S606


def hand_over(path: str) -> int | None:
    """The run's exit code from the warm engine, or None when it is to run cold."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(path)
    except OSError:
        connection.close()
        return None
    body = json.dumps({"env": dict(os.environ), "cwd": os.getcwd()}).encode()
    socket.send_fds(connection, [HEADER.pack(len(body))], [0, 1, 2])
    connection.sendall(body)
    for forwarded in (signal.SIGTERM, signal.SIGINT):
        signal.signal(forwarded, lambda number, _frame: connection.sendall(bytes([number])))
    answer = b""
    while len(answer) < HEADER.size:
        chunk = connection.recv(HEADER.size - len(answer))
        if not chunk:
            print("warm engine: the run's process ended without an exit code", file=sys.stderr)
            return 1
        answer += chunk
    connection.close()
    (code,) = HEADER.unpack(answer)
    return None if code == COLD else code


def main() -> None:
    path = os.environ.get(SOCKET_ENV)
    code = hand_over(path) if path else None
    if code is None:
        run_cold()
    sys.exit(code)


if __name__ == "__main__":
    main()
