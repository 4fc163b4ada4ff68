"""What a URL jobsd will dial must look like: grammar, not policy.

Shared by the API's job documents and the config's `alert_url`, so both
refuse the same URLs with the same words; which addresses may be dialled
at all is the address policy's question (`jobsd.address_policy`), asked
where the socket is opened.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from urllib.parse import urlsplit

from jobsd.http_url import idna_host

_HOST = re.compile(r"[A-Za-z0-9_-]{1,63}(?:\.[A-Za-z0-9_-]{1,63})*\.?")
_PORT = re.compile(r"[0-9]{1,5}")
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})


def url_problem(url: str) -> str | None:
    if any(unicodedata.category(c) in _INVISIBLE for c in url):
        return "must not contain spaces, control or invisible characters; percent-encode them"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "is not a well-formed URL"
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "must be an absolute http:// or https:// URL with a host"
    if "@" in parts.netloc:
        return "must not carry a user name or password (user:pass@); send them in a header"
    if parts.netloc.startswith("["):
        host, _, rest = parts.netloc[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
        if "%" in host or not _is_ipv6(host) or (rest and port is None):
            return "has a malformed IPv6 address; write it like http://[2001:db8::1]:8080/"
    else:
        host, colon, port_text = parts.netloc.partition(":")
        port = port_text if colon else None
        if not host.isascii():
            # IDNA 2008 as the request is sent (`jobsd.http_url`), not Python's
            # IDNA 2003 codec: that one maps `Ⅻ.com` or full-width letters to
            # ASCII, so a URL was accepted whose every run failed unsent.
            try:
                host = idna_host(host)
            except UnicodeError:  # idna.IDNAError is one
                return "has a host name that is not a valid international domain name"
        if not _HOST.fullmatch(host) or len(host.rstrip(".")) > 253:
            return "has a malformed host name"
        if problem := numeric_host_problem(host):
            return problem
    if port is not None and not (_PORT.fullmatch(port) and 1 <= int(port) <= 65535):
        return "has a port that is not a number 1-65535"
    return None


_NUMERIC_LABEL = re.compile(r"[0-9]+|0[xX][0-9A-Fa-f]*")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_DOTTED_QUAD = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def numeric_host_problem(host: str) -> str | None:
    """Why a host that reads as an IPv4 address is refused; None for names and 1.2.3.4.

    A host whose last label is a number is an address to the WHATWG URL
    parser and to inet_aton, which read `0177.0.0.1` as octal, `0x7f.1` as
    hex, and `127.1` or `2130706433` as shorthand; other software reads the
    same text as decimal or as a name. Only the one form everyone reads
    alike is accepted: four decimal numbers 0-255 without leading zeros.
    """
    last = host.removesuffix(".").rsplit(".", 1)[-1]
    if not _NUMERIC_LABEL.fullmatch(last) or _DOTTED_QUAD.fullmatch(host):
        return None
    return (
        f"has the host {host}, which reads as an IPv4 address but is not written as four"
        " decimal numbers 0-255 without leading zeros or a trailing dot (octal, hex,"
        " shortened and single-number forms are read differently by different software);"
        " write it like 192.0.2.10"
    )


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True
