"""The two things every actor may read and the daemon alone replaces.

`Settings` holds the live config: the one reference a reload (SIGHUP)
swaps, read whole by each user (a request, a run's signer, the metrics) so
none sees half of an old config and half of a new. `Health` is what
`/healthz` and systemd are told: ready once every actor runs, stopping
once the stop begins. Both are plain holders, kept out of the API package
so that the reloader, the lifecycle and the observer need not import it.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobsd.config import Config


@dataclass
class Settings:
    config: Config


@dataclass
class Health:
    """Set by the daemon: `ready` once every actor runs, cleared as the stop begins."""

    ready: bool = False
    stopping: bool = False
