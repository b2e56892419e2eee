"""One writer per cache directory: an exclusive lock held while a cache is written.

The lock is ``fcntl.flock`` on ``<cache>/writer.lock``: the system releases it when its holder
exits, however it exits, so a killed extraction never blocks the run that resumes it. The file
names the holder (pid, host, start time) while it is held, and is left empty afterwards.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

LOCK_NAME = "writer.lock"


class CacheBusy(ValueError):
    """Another process is writing this cache."""


class WriterLock:
    def __init__(self, cache_dir: str | Path):
        self.path = Path(cache_dir) / LOCK_NAME
        self._handle = None

    def acquire(self) -> WriterLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # closed by release(), or below when refused
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read()
            handle.close()
            raise CacheBusy(
                f"{self.path.parent} is being written by {describe(holder)}; wait for it to "
                "finish, or stop it and run the same command again (it resumes)"
            ) from None
        handle.seek(0)
        handle.truncate()
        started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        handle.write(
            json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started})
        )
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is None:
            return
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.flush()
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()
        self._handle = None

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def describe(holder: str) -> str:
    try:
        info = json.loads(holder)
        return f"pid {info['pid']} on {info['host']} (since {info['started']})"
    except (ValueError, KeyError, TypeError):
        return "another process"
