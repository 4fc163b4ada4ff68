"""`jobsd serve | check-config | token | backup | rotate-key | check-keys | signing-secret |
rotate-signing-secret`.

Errors name the bad key and exit with status 2, so a unit that fails to
start says why in `systemctl status`. `serve` without `--config` runs on
built-in defaults under the current directory and prints a fresh token
once: the shortest path from `pip install` to a working `curl`. The
maintenance commands find the database and key file the same way (`--config`,
else `--data-dir`, default `.`) and run beside a serving daemon; their work
lives in `jobsd.store.backup` and `jobsd.rotation`, this module only prints.
`serve` logs as `[log]` says (`jobsd.logs`); the signing verbs are in
`jobsd.cli_signing`.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from jobsd import cli_signing, logs, rotation
from jobsd.cli_refusals import first_leaf, refuse, refused
from jobsd.config import (
    Config,
    ServerConfig,
    builtin_config,
    load_config,
    new_token,
    token_sha256,
)
from jobsd.errors import ConfigError
from jobsd.signing_secrets import check_accounts
from jobsd.store.backup import backup_database
from jobsd.store.rekey import Survey


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobsd", description="Run scheduled HTTP jobs.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = _with_location(sub.add_parser("serve", help="run the daemon"))
    listen = "where to listen, overriding the config (e.g. 127.0.0.1:0)"
    serve.add_argument("--listen", metavar="HOST:PORT", help=listen)
    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("file", type=Path, metavar="FILE")
    sub.add_parser("token", help="print a new API token and its config line")
    backup = _with_location(
        sub.add_parser("backup", help="copy the live database to DEST, online, and verify it")
    )
    backup.add_argument("dest", type=Path, metavar="DEST")
    backup.add_argument("--force", action="store_true", help="overwrite an existing DEST")
    rotate = _with_location(
        sub.add_parser("rotate-key", help="add a new active key and re-seal stored values")
    )
    mode = rotate.add_mutually_exclusive_group()
    mode.add_argument(
        "--retire", metavar="KEY_ID", help="remove a key no stored value is sealed under"
    )
    mode.add_argument(
        "--reseal",
        action="store_true",
        help="only re-seal values under the active key (finish an interrupted rotation)",
    )
    _with_location(sub.add_parser("check-keys", help="list stored values the keys cannot open"))
    cli_signing.add_parsers(sub, _with_location)
    return parser


def _with_location(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """`--config` or `--data-dir`, not both: with a config its `storage.path` and
    `secrets.key_file` say where the files are, so a `--data-dir` beside it was
    silently ignored (a backup of another database than the one named)."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--config", type=Path, metavar="FILE", help="TOML config file")
    where.add_argument(
        "--data-dir",
        type=Path,
        default=Path("."),
        metavar="DIR",
        help="where the database and key file live without --config (default: .)",
    )
    return parser


def _located(args: argparse.Namespace) -> Config:
    if args.config is not None:
        return load_config(args.config)
    return builtin_config(args.data_dir, token_sha256(""))


def _serve(args: argparse.Namespace) -> int:
    # Imported here: the maintenance commands (run from cron) need none of the server.
    import trio

    from jobsd.daemon import DaemonOptions, run_daemon

    token: str | None = None
    if args.config is not None:
        config = load_config(args.config)
    else:
        token = new_token()
        config = builtin_config(args.data_dir, token_sha256(token))
    if args.listen is not None:
        config = _with_listen(config, args.listen)
    logs.configure(config.log)
    args.json_logs = config.log.format == "json"

    def announce(bound: list[str]) -> None:
        _set_the_start_aside()
        urls = ", ".join(bound)
        if args.json_logs:  # stdout too: every line one JSON object
            print(logs.json_line("jobsd", f"jobsd listening on {urls}", urls=bound), flush=True)
            return
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


def _set_the_start_aside() -> None:
    """Once ready, what the start made (modules, the app, the config) is moved out
    of the cycle collector's sight (`gc.freeze`).

    It lives as long as the process, yet every full collection walked all of
    it: 55-61 ms, every loop's task stopped, a few times a minute under load
    (gc callbacks in a daemon taking 300 run-nows/s; 3.9 ms once frozen).
    Done here, in the process's entry point, not in `run_daemon`, which
    tests run inside their own process. What frozen objects later drop is
    still freed by reference counting; only cycles among them outlive their
    use.
    """
    gc.freeze()
    logging.getLogger("jobsd").info(
        "ready: %d objects of the start set aside from the cycle collector", gc.get_freeze_count()
    )


def _with_listen(config: Config, listen: str) -> Config:
    """The config with `--listen` in `[server]`, checked by the config's own grammar.

    The section is dumped as JSON (networks as strings): its Python dump holds
    `trusted_proxies` as network objects, which the grammar refuses (it reads
    TOML strings), so any such config was refused as a bad --listen.
    """
    try:
        server = ServerConfig.model_validate(
            {**config.server.model_dump(mode="json"), "listen": listen}
        )
    except ValidationError as exc:
        message = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise ConfigError("--listen", message) from None
    return config.model_copy(update={"server": server})


def _check(path: Path) -> Config:
    config = load_config(path)
    check_accounts(config)
    print(f"{path}: ok ({len(config.accounts)} accounts, {len(config.plans)} plans)")
    return config


def _token() -> None:
    token = new_token()
    print(f"token: {token}")
    print("add its digest to the account's tokens_sha256 in the config:")
    print(f'tokens_sha256 = ["{token_sha256(token)}"]')


def _backup(args: argparse.Namespace) -> int:
    config = _located(args)
    report = backup_database(config.storage.path, args.dest, force=args.force)
    print(
        f"backed up {config.storage.path} to {report.dest}: {report.size_bytes} bytes, "
        f"schema version {report.schema_version}, quick_check ok"
    )
    print(
        f"header values in it open only with the key file ({config.secrets.key_file}): "
        "keep a copy of that too, apart from the database copies"
    )
    return 0


def _rotate_key(args: argparse.Namespace) -> int:
    config = _located(args)
    key_path, db_path = config.secrets.key_file, config.storage.path
    if args.retire is not None:
        ring = rotation.retire(key_path, db_path, args.retire)
        print(f"retired key {args.retire}; the key file holds {', '.join(ring.key_ids)}")
        return 0
    done = rotation.rotate(key_path, db_path, new_key=not args.reseal)
    if args.reseal:
        print(f"active key {done.active_id} (no key added)")
    else:
        print(f"added key {done.active_id}, now active; previously active: {done.previous_id}")
    if done.reseal is None or done.survey is None:
        print(f"no database at {db_path} yet: nothing to re-seal")
        return 0
    print(
        f"re-sealed {done.reseal.resealed} header values under {done.active_id} "
        f"({done.reseal.passes} passes, {done.reseal.raced} rows changed meanwhile and redone)"
    )
    status = _print_survey(done.survey)
    stale = [
        k for k in done.key_ids if k != done.active_id and not done.survey.values_by_key.get(k)
    ]
    for key_id in stale:
        print(
            f"no value is sealed under {key_id} any more; once no backup you may restore "
            "needs it, remove it with:"
        )
        print(f"  jobsd rotate-key {_location_args(args)}--retire {key_id}")
    return status


def _check_keys(args: argparse.Namespace) -> int:
    config = _located(args)
    return _print_survey(rotation.check(config.secrets.key_file, config.storage.path))


def _print_survey(survey: Survey) -> int:
    """Print values per key and every value that does not open; 1 if any."""
    counts = ", ".join(f"{k}: {n}" for k, n in sorted(survey.values_by_key.items()))
    print(f"header values per key: {counts or 'none stored'}")
    if not survey.unopenable:
        print("every stored header value opens with the key file")
        return 0
    print(f"{len(survey.unopenable)} header values cannot be opened with the key file:")
    for bad in survey.unopenable:
        job = f"{bad.job_slug} (deleted)" if bad.deleted else bad.job_slug
        print(f"  account {bad.account_id}, job {job}, header {bad.header}: {bad.why}")
    print("put the missing key back in the key file, or set these headers again (PUT the job)")
    return 1


def _location_args(args: argparse.Namespace) -> str:
    if args.config is not None:
        return f"--config {args.config} "
    if args.data_dir != Path("."):
        return f"--data-dir {args.data_dir} "
    return ""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # httpx logs every request's full URL at INFO, and a job's URL may carry
    # a secret (a signed webhook, ?api_key=): keep it out of the journal.
    for name in logs.QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return _dispatch(args)
    except BaseExceptionGroup as group:
        # Errors raised inside the daemon's nurseries arrive grouped; a bad
        # config or database is still a message and exit 2, not a traceback.
        known = group.subgroup(refused)
        if known is None:
            raise
        return refuse(first_leaf(known), args)
    except Exception as exc:
        if not refused(exc):
            raise
        return refuse(exc, args)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "serve":
        return _serve(args)
    if args.command == "check-config":
        _check(args.file)
        return 0
    if args.command == "backup":
        return _backup(args)
    if args.command == "rotate-key":
        return _rotate_key(args)
    if args.command == "check-keys":
        return _check_keys(args)
    if args.command == "signing-secret":
        return cli_signing.signing_secret(_located(args), args.account)
    if args.command == "rotate-signing-secret":
        return cli_signing.rotate_signing_secret(_located(args), args.account, args.overlap_h)
    _token()
    return 0
