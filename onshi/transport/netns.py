"""Open sockets inside another process's network namespace without moving the process there.

``setns(CLONE_NEWNET)`` changes the namespace of the calling *thread* only, so a short-lived
helper thread enters the namespace, opens and connects the socket, and exits; the socket keeps
its namespace and works from any thread. Python 3.11 has no ``os.setns``, hence ctypes.
Entering a network namespace needs CAP_SYS_ADMIN (root here).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

CLONE_NEWNET = 0x40000000
T = TypeVar("T")


def netns_inode(pid: int | str = "self") -> int:
    """The inode identifying the network namespace of ``pid`` (equal inodes = same namespace)."""
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def _setns(fd: int, nstype: int) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    if libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def run_in_netns(pid: int, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a fresh thread that first joins the network namespace of ``pid``."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(fd, CLONE_NEWNET)
            finally:
                os.close(fd)
            outcome.append(fn())
        except BaseException as exc:  # handed to the caller's thread below
            failure.append(exc)

    thread = threading.Thread(target=target, name=f"netns-{pid}", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


def connect_in_netns(pid: int, host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to ``host:port`` as seen from inside the namespace of ``pid``."""
    return run_in_netns(pid, lambda: socket.create_connection((host, port), timeout=timeout))
