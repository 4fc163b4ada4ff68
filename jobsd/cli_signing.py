"""`jobsd signing-secret ACCOUNT` and `jobsd rotate-signing-secret ACCOUNT [--overlap-h H]`.

They print secrets on stdout, alone on their line, so a script can take
them (`jobsd signing-secret acme --config F > receiver.secret`); what is
said about them goes to stderr. A secret never travels in argv or the
environment, in either direction. The work is `jobsd.signing_secrets`'s;
like `rotate-key` these run beside a serving daemon, which follows the
key file and signs with both secrets until the overlap ends.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import timedelta

from jobsd import signing_secrets
from jobsd.clock import iso, system_utc_now
from jobsd.config import Config

MAX_OVERLAP_H = 24 * 30


def add_parsers(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    with_location: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    """`with_location` adds --config / --data-dir, as for every maintenance command."""
    show = sub.add_parser(
        "signing-secret", help="print an account's request-signing secret (made if it has none)"
    )
    show.add_argument("account", metavar="ACCOUNT")
    rotate = sub.add_parser(
        "rotate-signing-secret",
        help="make a new signing secret; the old one also signs until the overlap ends",
    )
    rotate.add_argument("account", metavar="ACCOUNT")
    rotate.add_argument(
        "--overlap-h",
        type=_hours,
        default=24,
        metavar="H",
        help=f"hours (0-{MAX_OVERLAP_H}) the old secret keeps signing beside the new (default 24)",
    )
    for parser in (show, rotate):
        with_location(parser)


def _hours(text: str) -> int:
    try:
        hours = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a whole number of hours") from None
    if not 0 <= hours <= MAX_OVERLAP_H:
        raise argparse.ArgumentTypeError(f"between 0 and {MAX_OVERLAP_H}")
    return hours


def signing_secret(config: Config, account: str) -> int:
    print(signing_secrets.active_secret(config, account), flush=True)
    return 0


def rotate_signing_secret(config: Config, account: str, overlap_h: int) -> int:
    now = system_utc_now()
    entries = signing_secrets.rotate(config, account, now, timedelta(hours=overlap_h))
    print(entries[0].secret, flush=True)
    if len(entries) > 1 and entries[1].until is not None:
        note = f"the previous secret also signs until {iso(entries[1].until)}"
    else:
        note = "no previous secret signs any more"
    print(f"new signing secret for {account!r} is active; {note}", file=sys.stderr)
    return 0
