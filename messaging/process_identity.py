"""Who holds a claim: this process, named so that another process on the same machine can tell for certain
whether it is still running (Linux `/proc`: the boot id, the pid and the pid's start time, so neither a reboot
nor a reused pid is mistaken for the claimer)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def _boot_id() -> str | None:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return None


def _start_time(pid: int) -> str | None:
    """The pid's start time in clock ticks since boot, or None if no live process has that pid (a zombie,
    killed and not yet reaped, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name: field 3 (state) onwards
    return None if fields[0] in {"Z", "X"} else fields[19]  # field 22: starttime


def current() -> str:
    """This process's identity (computed each time: a forked child is another process)."""
    pid = os.getpid()
    boot, started = _boot_id(), _start_time(pid)
    if boot is None or started is None:  # no /proc: named, but never judged dead from elsewhere
        return f"{socket.gethostname()}:{pid}"[:100]
    return f"{boot}:{pid}:{started}"


def is_gone(identity: str) -> bool:
    """True only when certain: the process ran on this machine since its last boot and runs no more."""
    parts = identity.split(":")
    if len(parts) != 3 or not parts[1].isdigit() or parts[0] != _boot_id():
        return False
    return _start_time(int(parts[1])) != parts[2]
