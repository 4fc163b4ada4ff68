"""A worker process: `python -m jobsd.workers.child FD`, one trio loop with its own delivery.

Started by the daemon (`jobsd.workers.pool`) with one end of a socket pair
as file descriptor FD, and nothing else: its argv holds that number, its
environment is the daemon's without systemd's notify socket, and every
setting and every request arrives over the pair (`jobsd.workers.wire`).
The address policy is enforced here, where the socket is opened
(`jobsd.delivery` over `jobsd.dialer`).

It ignores SIGINT and SIGTERM: a Ctrl-C or systemd's stop signal reaches
the whole process group, but only the daemon decides when a request is
abandoned (after `shutdown_grace_s`). It ends when the daemon closes the
pair, or dies: end of file cancels every request in flight and exits, so
no worker outlives its daemon.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys

import trio

from jobsd import logs
from jobsd.address_policy import AddressPolicy
from jobsd.delivery import Delivery
from jobsd.job_model import HttpConfig
from jobsd.messages import Outcome
from jobsd.runs import FailureReason, RunStatus
from jobsd.taskdump import dump_on_signal
from jobsd.workers import wire
from jobsd.workers.sender import FrameSender

log = logging.getLogger("jobsd.worker")


class Worker:
    def __init__(self, stream: trio.SocketStream, hello: wire.Doc) -> None:
        self._delivery = Delivery(
            AddressPolicy(list(hello["allow_cidrs"])),
            body_keep_bytes=int(hello["body_keep_bytes"]),
            body_cap_bytes=int(hello["body_cap_bytes"]),
            keepalive_s=float(hello["keepalive_s"]),
        )
        self._sender = FrameSender(stream, int(hello["capacity"]))
        self._in_flight: dict[int, trio.CancelScope] = {}

    async def serve(self, reader: wire.FrameReader) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._sender.run)
            nursery.start_soon(self._delivery.idle.tidy)
            nursery.start_soon(dump_on_signal)
            await self._sender.send({"kind": "ready"})
            while (doc := await reader.receive()) is not None:
                seq = wire.seq_of(doc)
                if doc["kind"] == "perform":
                    scope = self._in_flight[seq] = trio.CancelScope()
                    config, stamp = wire.config_of(doc["config"]), wire.stamp_of(doc)
                    nursery.start_soon(self._perform, seq, scope, config, stamp)
                elif doc["kind"] == "cancel":
                    cancelled = self._in_flight.pop(seq, None)
                    if cancelled is not None:
                        cancelled.cancel()
            nursery.cancel_scope.cancel()  # the daemon is done with us, or gone

    async def _perform(
        self, seq: int, scope: trio.CancelScope, config: HttpConfig, stamp: list[tuple[str, str]]
    ) -> None:
        with scope:
            try:
                outcome = await self._delivery.perform(config, stamp=stamp)
            except Exception as exc:  # the per-run boundary, as in the daemon's executor
                # Its type and line only: the message may quote the URL or a header.
                log.error(
                    "a request failed inside the worker process",
                    extra=logs.fields(**logs.failure(exc)),
                )
                error = f"jobsd failed while performing this run: {type(exc).__name__}"
                outcome = Outcome(RunStatus.FAILED, FailureReason.WORKER_LOST, error, {}, None)
            self._in_flight.pop(seq, None)
            await self._sender.send(wire.done_doc(seq, outcome))


async def serve(sock: socket.socket) -> None:
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
    reader = wire.FrameReader(stream)
    hello = await reader.receive()
    if hello is None or hello.get("kind") != "hello":
        raise wire.FrameError("a worker's first frame is hello")
    logs.configure(logs.LogSettings(format=hello["log_format"], level=hello["log_level"]))
    await Worker(stream, hello).serve(reader)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=int(argv[1]))
    trio.run(serve, sock)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
