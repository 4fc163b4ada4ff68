"""Header values sealed in a row: the JSON list `[{name, sealed}]` both a job
row (its base headers) and an environment row (its header overrides) keep.

Each value is sealed bound to (account, job row, header name) and, for an
environment's override, the environment, so a value copied into another
row, or from one environment to another, does not open. A value that does
not open is shown as a marker (`strict=False`, what the API reads), or
raises a `SealError` naming the header (`strict=True`, what an executor
about to send the request asks).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from jobsd.crypto import header_aad
from jobsd.errors import SealError
from jobsd.job_model import Header
from jobsd.store.keyring import Sealer, unreadable_marker


def open_headers(
    keyring: Sealer,
    account_id: str,
    job_pk: int,
    raw: str,
    *,
    environment: str | None = None,
    strict: bool = False,
) -> tuple[Header, ...]:
    headers: list[Header] = []
    for item in json.loads(raw):
        name = item["name"]
        try:
            value = keyring.open(
                item["sealed"], aad=header_aad(account_id, job_pk, name, environment)
            )
        except SealError as exc:
            if strict:
                where = "" if environment is None else f" (environment {environment!r})"
                raise SealError(f"header {name!r}{where} cannot be opened: {exc}") from None
            value = unreadable_marker(exc)
        headers.append(Header(name, value))
    return tuple(headers)


def seal_headers(
    keyring: Sealer,
    account_id: str,
    job_pk: int,
    headers: Sequence[Header],
    environment: str | None = None,
) -> str:
    return json.dumps(
        [
            {
                "name": h.name,
                "sealed": keyring.seal(
                    h.value, aad=header_aad(account_id, job_pk, h.name, environment)
                ),
            }
            for h in headers
        ]
    )
