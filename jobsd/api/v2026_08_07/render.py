"""Resources out as 2026-08-07 renders them.

A job carries `kind`, `timezone`, `retry_policy` and its `environments`:
one entry per environment it has a row in that the caller may see, with
`enabled`, the overrides it holds (sparse, `headers.<name>` flat), the
read-only `next_run_at`, and, while it is auto-paused, jobsd's read-only
`paused_reason` saying why (entries are sparse: absent when not paused).
Headers, in the job and in a run's `request` snapshot, are a name -> value
object.

A job written through 2026-06-04 may hold two headers whose names are equal
but for case (an array can say that, an object cannot): they are shown as
one, under the first name, values joined with ", " as HTTP itself combines
repeated fields (RFC 9110, 5.3).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from jobsd.api.render import configuration
from jobsd.clock import iso
from jobsd.job_model import Header, Job, Overlay
from jobsd.messages import Run
from jobsd.run_attributes import retry_attribute, run_attributes


def header_map(headers: Iterable[Header]) -> dict[str, str]:
    combined: dict[str, str] = {}
    names: dict[str, str] = {}
    for header in headers:
        key = header.name.lower()
        if key in names:
            combined[names[key]] += f", {header.value}"
        else:
            names[key] = header.name
            combined[header.name] = header.value
    return combined


def overlay_leaves(overlay: Overlay) -> dict[str, object]:
    leaves: dict[str, object] = {
        "url": overlay.url,
        "method": overlay.method,
        "timeout": overlay.timeout_s,
        "body": overlay.body,
        "success_status": overlay.success_status,
        "tls_verify": overlay.tls_verify,
        "ca_cert": overlay.ca_cert,
        "schedule": overlay.schedule,
        "timezone": overlay.timezone,
        "retry_policy": overlay.retry_policy,
    }
    present = {key: value for key, value in leaves.items() if value is not None}
    present.update({f"headers.{n}": v for n, v in header_map(overlay.headers).items()})
    return present


def render_job(job: Job, environments: Sequence[str]) -> dict[str, object]:
    """`environments`: the ones the caller may see, in the account's order."""
    spec = job.spec
    entries: dict[str, object] = {}
    for env in environments:
        state = job.environments.get(env)
        if state is not None:
            entry = {
                "enabled": state.enabled,
                **overlay_leaves(state.overlay),
                "next_run_at": iso(state.next_run_at),
            }
            if state.paused_reason is not None:
                entry["paused_reason"] = state.paused_reason
            entries[env] = entry
    return {
        "id": spec.slug,
        "type": "job",
        "attributes": {
            "name": spec.name,
            "description": spec.description,
            "type": "http",
            "schedule": spec.schedule,
            "timezone": spec.timezone,
            "configuration": configuration(spec.config, header_map(spec.config.headers)),
            "environments": entries,
            "concurrency_policy": "ALLOW",
            "retry_policy": spec.retry_policy,
            "kind": spec.kind.value,
            "overlap_policy": spec.overlap_policy.value,
            "created_at": iso(job.created_at),
            "updated_at": iso(job.updated_at),
            "deleted_at": iso(job.deleted_at),
            "version": job.version,
        },
    }


def render_run(run: Run) -> dict[str, object]:
    attributes = run_attributes(run)
    request = run.request
    if request is not None and isinstance(request.get("headers"), list):
        snapshot = request["headers"]
        assert isinstance(snapshot, list)
        headers = [Header(str(h["name"]), str(h["value"])) for h in snapshot]
        request = {**request, "headers": header_map(headers)}
    return {
        "id": run.id,
        "type": "run",
        "attributes": {
            **attributes,
            "environment": run.environment,
            "retry": retry_attribute(run),
            "request": request,
        },
    }
