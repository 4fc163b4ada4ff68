"""The writing end of a socket pair: `FrameSender`, one task writing queued frames.

Split from `jobsd.workers.wire` (the frames and what they carry). The
daemon must know whether a worker that died can have had a run's request:
only a frame written whole can (a worker acts on whole frames only), so a
frame sent with a `Tracked` records how far it got.
"""

from __future__ import annotations

from typing import Protocol

import trio

from jobsd.workers.wire import Doc, encode


class Tracked(Protocol):
    """A frame's progress, for a sender that must know whether the other end
    can have it: `QUEUED` (may still be withdrawn), `WRITING`, `WRITTEN` (its
    last byte is in the socket), or `WITHDRAWN` (never written)."""

    state: int


QUEUED, WRITING, WRITTEN, WITHDRAWN = range(4)
_Item = tuple[bytes, Tracked | None]


class FrameSender:
    """One task writes; everyone else queues. Bounded by `capacity` frames.

    A frame sent with a `Tracked` is `WRITTEN` only once its last byte is in
    the socket: a frame still queued, or cut short, when the other end died
    never reached it (a worker acts on whole frames only), so its run was
    not sent; and one withdrawn while still queued is never written."""

    def __init__(self, stream: trio.abc.SendStream, capacity: int) -> None:
        self._stream = stream
        # Written with the socket's own send, to know how far a write got.
        self._socket = stream.socket if isinstance(stream, trio.SocketStream) else None
        self._tx, self._rx = trio.open_memory_channel[_Item](capacity)

    async def send(self, doc: Doc, tracked: Tracked | None = None) -> None:
        """Queue `doc`: at once, without a trip through the scheduler, while there
        is room (the capacity holds a frame for every request in flight);
        else wait for room. Cancelled already: nothing is queued (a run
        cancelled before its request went out sends nothing)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        item = (encode(doc), tracked)
        try:
            self._tx.send_nowait(item)
        except trio.WouldBlock:
            await self._tx.send(item)

    def send_nowait(self, doc: Doc) -> None:
        """Queue without waiting; trio.WouldBlock when `capacity` frames wait."""
        self._tx.send_nowait((encode(doc), None))

    def close(self) -> None:
        """No more frames: a `send` from now on raises trio.BrokenResourceError."""
        self._rx.close()

    async def run(self) -> None:
        """Write until cancelled, or until the other end is gone (then returns)."""
        async for item in self._rx:
            batch = [item]
            while True:
                try:
                    batch.append(self._rx.receive_nowait())
                except trio.WouldBlock:
                    break
            if not await self._write(batch):
                return

    async def _write(self, batch: list[_Item]) -> bool:
        """Write a batch as one buffer (a burst of runs costs a few system calls);
        False when the other end is gone."""
        frames: list[bytes] = []
        ends: list[tuple[int, Tracked]] = []  # where each tracked frame's last byte is
        size = 0
        for frame, tracked in batch:
            if tracked is not None:
                if tracked.state == WITHDRAWN:
                    continue
                tracked.state = WRITING
                ends.append((size + len(frame), tracked))
            frames.append(frame)
            size += len(frame)
        data = memoryview(b"".join(frames))
        written = done = 0
        while written < size:
            try:
                if self._socket is None:
                    await self._stream.send_all(data)
                    written = size
                else:
                    written += await self._socket.send(data[written:])
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                return False
            while done < len(ends) and ends[done][0] <= written:
                ends[done][1].state = WRITTEN
                done += 1
        return True
