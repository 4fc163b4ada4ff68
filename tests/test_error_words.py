"""What an error says is for the API's client: it names the bound it met.

Werkzeug's own words for a body that came too slowly speak of "the browser"
and "the specified time"; a client of the API has no browser and was never
told a time. The 408 (from the app, or from the run-now answered below it,
both worded by `jsonapi.http_error`) names `server.body_timeout_s` instead.
"""

from __future__ import annotations

from werkzeug.exceptions import RequestTimeout

from jobsd.api import jsonapi


def test_a_body_timeout_names_the_bound_and_what_happens() -> None:
    err = jsonapi.http_error(RequestTimeout(), "POST")
    (item,) = err.items
    assert (err.status, item.status, item.code, item.title) == (
        408,
        408,
        "http_error",  # unchanged on the wire: clients may match it
        "Request Timeout",
    )
    assert "browser" not in item.detail and "specified time" not in item.detail, item.detail
    assert "body_timeout_s" in item.detail and "nothing was changed" in item.detail, item.detail
