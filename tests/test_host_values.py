"""`jobsd.api.edge.is_host`: every Host it lets through is one Werkzeug builds links on.

`links.next` of `GET /api/v1/runs` is built from the Host by Werkzeug, which
decodes its IDNA labels (`xn--...`) and raised past every error handler on
one it could not decode (a 500 and a traceback in the log).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from werkzeug.sansio.utils import get_host
from werkzeug.urls import uri_to_iri

from jobsd.api.edge import is_host

labels = st.one_of(
    st.text(alphabet="abcXYZ019-", min_size=1, max_size=8),
    st.text(alphabet="abz09-", max_size=8).map(lambda s: "xn--" + s),
    st.sampled_from(["xn--80ak6aa92e", "XN--ZZ", "xn--n3h", "localhost"]),
)
hosts = st.builds(
    lambda names, port: ".".join(names) + port,
    st.lists(labels, min_size=1, max_size=3),
    st.sampled_from(["", ":1", ":8080", ":080", ":00443", ":0", ":65535", ":65536"]),
)


@given(hosts)
def test_a_host_let_through_is_one_links_can_be_built_on(host: str) -> None:
    if is_host(host.encode()):
        uri_to_iri(f"http://{host}/api/v1/runs")  # raises on what Werkzeug cannot read
        # A host Werkzeug does not read (a port such as 080) is "" to it: links
        # then came out as `http:/api/v1/runs?...`.
        assert get_host("http", host) != ""


def test_idna_hosts_that_decode_are_hosts() -> None:
    assert is_host(b"xn--80ak6aa92e.example:443") and is_host(b"XN--N3H.net")
    assert not is_host(b"xn--zz") and not is_host(b"xn--a.xn--b")


def test_a_port_is_1_to_65535_without_a_leading_zero() -> None:
    assert is_host(b"a.example:1") and is_host(b"a.example:65535") and is_host(b"[::1]:8080")
    for odd in (b"a.example:080", b"a.example:00443", b"[::1]:0080", b"a.example:0", b"a.b:65536"):
        assert not is_host(odd), odd
