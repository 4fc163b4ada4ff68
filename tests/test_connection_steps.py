"""What an answer costs the server's loop in trips through trio's scheduler.

Each write of an answer takes the connection's send lock; an `async with` on
a trio lock yields even when the lock is free, so every write paid a task
step of its own before its send (`jobsd.api.connection`). Counted here by a
trio instrument over real sockets, the client's own steps left out.
"""

from __future__ import annotations

import trio

from tests.bare_server import bare_server
from tests.test_keepalive_timer import GET, answer, app

REQUESTS = 200


class _ServerSteps(trio.abc.Instrument):
    def __init__(self, client: trio.lowlevel.Task) -> None:
        self.client = client
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is not self.client:
            self.steps += 1


async def test_an_answer_takes_no_step_for_a_free_send_lock() -> None:
    async with bare_server(app, keep_alive_s=30) as (port, _):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(GET % b"fast")
        await answer(stream)
        counter = _ServerSteps(trio.lowlevel.current_task())
        trio.lowlevel.add_instrument(counter)
        try:
            for _ in range(REQUESTS):
                await stream.send_all(GET % b"fast")
                await answer(stream)
        finally:
            trio.lowlevel.remove_instrument(counter)
        await stream.aclose()
    per_request = counter.steps / REQUESTS
    # This app answers in several writes (head, body, end of chunks).
    assert per_request <= 8.0, per_request  # 9.0 with a step per lock
