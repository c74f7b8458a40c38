"""Test helpers: a meter on a real pseudo-terminal that replays real telegrams."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import tty
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.conftest import corpus_dir

FIXTURES = Path(__file__).parent / "fixtures"


def corpus_telegram(name: str) -> bytes:
    """Wire bytes of a corpus sample, e.g. ``dsmr/nl_dsmr50_iskra_mt382.txt``."""
    return (corpus_dir() / name).read_bytes()


class PtyMeter:
    """Writes telegrams to the master side of a pty; the slave path is the 'port'."""

    def __init__(self, telegrams: list[bytes], interval: float = 0.05) -> None:
        """Replay ``telegrams`` in a loop every ``interval`` seconds."""
        self.telegrams = telegrams
        self.interval = interval
        self.path = ""
        self._master = -1
        self._slave = -1
        self._task: asyncio.Task[None] | None = None
        self.sent = 0

    async def __aenter__(self) -> Self:
        """Open the pty and start writing."""
        self._master, self._slave = os.openpty()
        tty.setraw(self._master)
        flags = fcntl.fcntl(self._master, fcntl.F_GETFL)
        fcntl.fcntl(self._master, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        self.path = os.ttyname(self._slave)
        self._task = asyncio.create_task(self._run())
        return self

    def set_telegrams(self, telegrams: list[bytes]) -> None:
        """Replace what the meter sends."""
        self.telegrams = telegrams

    async def _run(self) -> None:
        i = 0
        while True:
            data = self.telegrams[i % len(self.telegrams)] if self.telegrams else b""
            i += 1
            with contextlib.suppress(BlockingIOError, OSError):
                if data:
                    os.write(self._master, data)
                    self.sent += 1
            await asyncio.sleep(self.interval)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop writing and close both ends."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
