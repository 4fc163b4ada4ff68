"""The API model machine's rules for runs by id and for retry policies.

Kept apart from tests/test_api_model.py only for size; `ApiModel` mixes
them in. A run is the caller's to cancel or rerun only when its account
holds it and, for a scoped token, it ran in an environment the token
reaches (else `404`, never `403`); cancel is `409` once the run is
terminal, rerun `409` once its job is gone, even when the slug names a
new job. A policy belongs to the account, so any of its tokens manages it;
deleting one a job still names is `409`.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import rule

from tests.api_model_docs import (
    NEW,
    POLICIES,
    POLICY_MUTATIONS,
    SEED,
    Mutation,
    encoded,
    policy_document,
    policy_fields,
)
from tests.api_model_host import ApiHost, Reply
from tests.api_model_state import WHO, Caller, call

VERSIONS = st.sampled_from([None, SEED, NEW])
MAX_PENDING = 4  # acme's and other's `max_pending_runs`
NO_RUN = ("00000000-0000-4000-8000-000000000000", "not-a-uuid")


class RunAndPolicyRules:
    """See the module note; `ApiModel` provides the host, callers and model."""

    host: ApiHost
    callers: dict[str, Caller]
    acme: Caller
    other: Caller

    def expect(
        self,
        reply: Reply,
        allowed: set[int] | frozenset[int],
        what: str,
        caller: Caller,
        version: str | None,
    ) -> None:
        raise NotImplementedError

    def admitted(self, caller: Caller) -> int:
        raise NotImplementedError

    def run_model(self, caller: Caller, reply: Reply, slug: str, generation: int) -> None:
        raise NotImplementedError

    def pick_run(self, data: st.DataObject) -> str:
        # in creation order: ids are random, so a sorted list would differ between replays
        known = [run for c in (self.acme, self.other) for run in c.account.runs]
        picked: str = data.draw(st.sampled_from(known + list(NO_RUN)))
        return picked

    @rule(data=st.data(), version=VERSIONS)
    def cancel_run(self, data: st.DataObject, version: str | None) -> None:
        caller = self.callers[data.draw(WHO)]
        run_id = self.pick_run(data)
        path = f"/api/v1/runs/{run_id}/actions/cancel"
        reply = call(self.host, caller, "POST", path, version=version)
        run = caller.account.runs.get(run_id)
        if run is None or not caller.sees(run):
            allowed = {404}
        else:
            allowed = {200} if run.status == "PENDING" else {409}
        self.expect(reply, allowed, "cancel", caller, NEW)  # a run names its environment
        if reply.status == 200:
            assert run is not None and reply.body["data"]["attributes"]["status"] == "CANCELED"
            run.status = "CANCELED"

    @rule(data=st.data(), version=VERSIONS)
    def rerun(self, data: st.DataObject, version: str | None) -> None:
        caller = self.callers[data.draw(WHO)]
        run_id = self.pick_run(data)
        path = f"/api/v1/runs/{run_id}/actions/rerun"
        reply = call(self.host, caller, "POST", path, version=version)
        account = caller.account
        run = account.runs.get(run_id)
        if run is None or not caller.sees(run):
            allowed = {404}
        elif not account.live(run.slug, run.generation):
            allowed = {409}
        else:
            allowed = {self.admitted(caller)}
            if version in (None, SEED) and account.jobs[run.slug].fields.kind == "manual":
                allowed |= {404, 409}
        self.expect(reply, allowed, "rerun", caller, NEW)
        if reply.status == 200:
            assert run is not None
            self.run_model(caller, reply, run.slug, run.generation)

    @rule(data=st.data(), version=VERSIONS, policy=st.sampled_from(POLICIES), put=st.booleans())
    def write_policy(
        self, data: st.DataObject, version: str | None, policy: str, put: bool
    ) -> None:
        caller = self.callers[data.draw(WHO)]
        fields = data.draw(policy_fields())
        sent = encoded(policy_document(policy, fields))
        policies = caller.account.policies
        if put:
            path = f"/api/v1/retry-policies/{policy}"
            reply = call(self.host, caller, "PUT", path, version=version, body=sent)
            allowed = (
                {404} if policy not in policies else {200} | ({403} if caller.scoped else set())
            )
        else:
            reply = call(
                self.host, caller, "POST", "/api/v1/retry-policies", version=version, body=sent
            )
            allowed = {409} if policy in policies else {201}
        self.expect(
            reply, allowed, "policy write", caller, NEW
        )  # the account's, not an environment's
        if reply.status in (200, 201):
            policies[policy] = fields

    @rule(data=st.data(), version=VERSIONS, policy=st.sampled_from(POLICIES), put=st.booleans())
    def spoil_policy(
        self, data: st.DataObject, version: str | None, policy: str, put: bool
    ) -> None:
        caller = self.callers[data.draw(WHO)]
        mutation: Mutation = data.draw(st.sampled_from(POLICY_MUTATIONS))
        doc = policy_document(policy, data.draw(policy_fields()))
        self.send_spoilt(caller, version, mutation, doc, "/api/v1/retry-policies", policy, put)

    def send_spoilt(
        self,
        caller: Caller,
        version: str | None,
        mutation: Mutation,
        doc: dict[str, Any],
        collection: str,
        resource_id: str,
        put: bool,
    ) -> None:
        """`doc` spoilt by `mutation`, created in `collection` or replacing `resource_id`:
        refused, and nothing changes."""
        method, path = ("PUT", f"{collection}/{resource_id}") if put else ("POST", collection)
        sent = encoded(mutation.change(doc))
        reply = call(
            self.host,
            caller,
            method,
            path,
            version=version,
            body=sent,
            content_type=mutation.content_type,
        )
        # Which refusal comes first (the body's, the path's, the id's) is open.
        allowed = set(mutation.statuses) | {409, 403} | ({404} if put else set())
        self.expect(reply, allowed, f"spoilt {method} {path} {mutation.label}", caller, NEW)

    @rule(data=st.data(), version=VERSIONS, policy=st.sampled_from(POLICIES))
    def delete_policy(self, data: st.DataObject, version: str | None, policy: str) -> None:
        caller = self.callers[data.draw(WHO)]
        account = caller.account
        path = f"/api/v1/retry-policies/{policy}"
        reply = call(self.host, caller, "DELETE", path, version=version)
        if policy not in account.policies:
            allowed = {404}
        else:
            allowed = {409} if account.policy_in_use(policy) else {204}
        self.expect(reply, allowed, "policy delete", caller, NEW)
        if reply.status == 204:
            del account.policies[policy]
