"""`jobsd serve | check-config | token`.

Errors name the bad key and exit with status 2, so a unit that fails to
start says why in `systemctl status`. `serve` without `--config` runs on
built-in defaults under the current directory and prints a fresh token
once: the shortest path from `pip install` to a working `curl`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import trio
from pydantic import ValidationError

from jobsd.config import (
    Config,
    ServerConfig,
    builtin_config,
    load_config,
    new_token,
    token_sha256,
)
from jobsd.daemon import DaemonOptions, run_daemon
from jobsd.errors import ConfigError, StorageError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobsd", description="Run scheduled HTTP jobs.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the daemon")
    serve.add_argument("--config", type=Path, help="TOML config file (default: built-in)")
    serve.add_argument(
        "--data-dir",
        type=Path,
        default=Path("."),
        help="where the database and key file live without --config (default: .)",
    )
    serve.add_argument(
        "--listen", help="host:port to listen on, overriding the config (e.g. 127.0.0.1:0)"
    )
    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("file", type=Path)
    sub.add_parser("token", help="print a new API token and its config line")
    return parser


def _serve(args: argparse.Namespace) -> int:
    token: str | None = None
    if args.config is not None:
        config = load_config(args.config)
    else:
        token = new_token()
        config = builtin_config(args.data_dir, token_sha256(token))
    if args.listen is not None:
        config = _with_listen(config, args.listen)

    def announce(bound: list[str]) -> None:
        urls = ", ".join(bound)
        print(f"jobsd listening on {urls}", flush=True)
        if token is not None:
            print(
                "built-in defaults: account 'local', data in "
                f"{config.storage.path.parent}\n"
                f"API token (shown once, valid until restart): {token}\n"
                f"try: curl -H 'Authorization: Bearer {token}' {bound[0]}/api/v1/jobs",
                flush=True,
            )

    options = DaemonOptions(config=config, config_path=args.config, announce=announce)
    trio.run(run_daemon, options)
    return 0


def _with_listen(config: Config, listen: str) -> Config:
    try:
        server = ServerConfig(**{**config.server.model_dump(), "listen": listen})
    except ValidationError as exc:
        raise ConfigError("--listen", exc.errors()[0]["msg"]) from None
    return config.model_copy(update={"server": server})


def _check(path: Path) -> Config:
    config = load_config(path)
    print(f"{path}: ok ({len(config.accounts)} accounts, {len(config.plans)} plans)")
    return config


def _token() -> None:
    token = new_token()
    print(f"token: {token}")
    print("add its digest to the account's tokens_sha256 in the config:")
    print(f'tokens_sha256 = ["{token_sha256(token)}"]')


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "check-config":
            _check(args.file)
            return 0
        _token()
        return 0
    except ConfigError as exc:
        print(f"jobsd: config error: {exc}", file=sys.stderr)
        return 2
    except StorageError as exc:
        print(f"jobsd: storage error: {exc}", file=sys.stderr)
        return 2
