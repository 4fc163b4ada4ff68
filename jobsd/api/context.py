"""What the API actor is given: the store, the live config, the channels.

The API never touches SQLite or httpx itself. It writes through the store
and hands work to the executors: committed runs through the pool's intake,
which never waits (`jobsd.dispatch`), cancels over a channel. `Settings` and
`Health` (`jobsd.settings`) are the live config and the readiness it serves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from jobsd.api.tokens import Tokens
from jobsd.dispatch import RunIntake
from jobsd.messages import CancelRun
from jobsd.settings import Health, Settings
from jobsd.store import Store

if TYPE_CHECKING:
    from jobsd.observer import Observer


@dataclass(frozen=True)
class ApiContext:
    store: Store
    settings: Settings
    orders: RunIntake
    cancels: trio.MemorySendChannel[CancelRun]
    health: Health = field(default_factory=Health)
    observer: Observer | None = None  # metrics and request logs; None in app-only tests
    tokens: Tokens = field(default_factory=Tokens)  # follows `settings.config` across reloads
