"""The bounds on one job's size, where the spec sets none (README, "Decisions").

At most `MAX_HEADERS` headers in any request a job sends, and the
configuration's strings together at most `MAX_CONFIGURATION_BYTES` as UTF-8.
They keep one job, and so one row of a listing, cheap: 60,000 headers once
cost a second of the single writer per create and gigabytes to list.

Environments multiply a job: each may override the body, the URL, the CA
bundle and headers. The API checks what each write sends; the store checks
the job it is about to keep (`stored_job_problem`), since a write merges
with overrides set by other tokens: a larger base can push another
environment's request past the bound, and writes of 64 environments, each
within it, could otherwise add up to 80 MiB in one job, served whole by a
single `GET`. So every environment's effective request stays within the
per-request bound, and the base with every override within
`MAX_STORED_JOB_BYTES`.
"""

from __future__ import annotations

from collections.abc import Mapping

from jobsd.job_model import HttpConfig, Overlay

MAX_HEADERS = 64
# A 1 MiB body, a 64 KiB CA bundle and a 2 KiB URL leave 190 KiB for headers:
# 64 of just under 3 KiB, or 23 at the 8 KiB maximum, several times the whole request
# head that common servers accept (nginx 32 KiB, Node.js 16 KiB).
MAX_CONFIGURATION_BYTES = 1280 * 1024
# The base and every environment's overrides together: four full requests'
# worth, room for a few environments with bodies of their own.
MAX_STORED_JOB_BYTES = 4 * MAX_CONFIGURATION_BYTES


def _size(text: str | None) -> int:
    return 0 if text is None else len(text.encode("utf-8", "surrogatepass"))


def configuration_bytes(config: HttpConfig) -> dict[str, int]:
    """The UTF-8 size of each variable-length part of a configuration."""
    return {
        "body": _size(config.body),
        "headers": sum(_size(h.name) + _size(h.value) for h in config.headers),
        "ca_cert": _size(config.ca_cert),
        "url": _size(config.url),
    }


def configuration_size_problem(config: HttpConfig) -> str | None:
    parts = configuration_bytes(config)
    total = sum(parts.values())
    if total <= MAX_CONFIGURATION_BYTES:
        return None
    shares = ", ".join(f"{name} {n}" for name, n in parts.items() if n)
    return (
        f"The configuration is {total} bytes as UTF-8 ({shares}); the limit for url, header"
        f" names and values, ca_cert and body together is {MAX_CONFIGURATION_BYTES} bytes."
    )


def overlay_bytes(overlay: Overlay) -> int:
    """What an environment's overrides add to the stored job."""
    return (
        _size(overlay.url)
        + _size(overlay.body)
        + _size(overlay.ca_cert)
        + sum(_size(h.name) + _size(h.value) for h in overlay.headers)
    )


def stored_job_problem(base: HttpConfig, overlays: Mapping[str, Overlay]) -> tuple[str, str] | None:
    """(environment or "", why) when the job as it would be stored breaks a bound.

    An environment names the one whose request would be too large; "" means
    the whole job is.
    """
    for env, overlay in sorted(overlays.items()):
        effective = overlay.apply(base)
        if len(effective.headers) > MAX_HEADERS:
            count = len(effective.headers)
            return env, f"{count} headers in {env}'s request; a job may send {MAX_HEADERS}."
        if problem := configuration_size_problem(effective):
            return env, f"In {env}: {problem}"
    total = sum(configuration_bytes(base).values()) + sum(map(overlay_bytes, overlays.values()))
    if total > MAX_STORED_JOB_BYTES:
        return "", (
            f"The job with every environment's overrides would be {total} bytes as UTF-8;"
            f" a job may hold {MAX_STORED_JOB_BYTES} (its configuration and the url, body,"
            " ca_cert and headers every environment overrides)."
        )
    return None
