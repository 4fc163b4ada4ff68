"""Bearer token digests to accounts, by one dict lookup per request.

Comparing the digest with every configured one would be a loop per
request with many accounts. Here the digests of the config in force are
indexed once (digest -> account and scope), and the
index is rebuilt whenever the config in force is another object than the
one it was built from. A reload (SIGHUP) always swaps `Settings.config`
for a new object (`jobsd.reload`), so a removed token is gone from the very
next request's lookup; the index is never trusted by anything but identity
with the config it came from, whatever way the new config was made
(`model_copy` carries no derived state across).

Timing: the lookup hashes the presented token (SHA-256) and looks the
digest up. What a dict probe's time could reveal is how close the
*digest* of a guess came to a stored digest; steering a digest toward a
chosen prefix is a preimage search, so it tells nothing about any token
(tests/test_secrets_in_logs.py still finds right, near and far tokens cost
the same). The token itself is never stored, compared in the clear, or
logged.
"""

from __future__ import annotations

from jobsd.config import Config, TokenMatch


def token_index(config: Config) -> dict[str, TokenMatch]:
    """Every digest of the config: its account, and its environments if scoped."""
    index: dict[str, TokenMatch] = {}
    for account in config.accounts:
        for digest in account.tokens_sha256:
            index[digest] = TokenMatch(account, None)
        for token in account.scoped_tokens:
            index[token.sha256] = TokenMatch(account, frozenset(token.environments))
    return index


class Tokens:
    """The index of the config last asked about; one per API."""

    def __init__(self) -> None:
        self._config: Config | None = None
        self._index: dict[str, TokenMatch] = {}

    def match(self, config: Config, digest: str) -> TokenMatch | None:
        if config is not self._config:  # another config is in force: a reload swapped it
            self._index = token_index(config)
            self._config = config
        return self._index.get(digest)
