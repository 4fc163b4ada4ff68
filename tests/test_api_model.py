"""The API's promises as a property: a state machine over two accounts against a model.

SEMANTICS.md and the README promise that bad input always gets a clear
JSON:API error and changes nothing, that no input yields a 500, and that
one account never sees or changes another's objects (`404`, never
`403`). Examples of each are tested elsewhere; this machine looks for the
sequence that breaks them. Its rules create, replace and delete jobs and
retry policies (valid documents, and each kind of bad one), run jobs now,
cancel and rerun runs, page through lists with filters and sorts, and send
requests with no token, an unknown version or a method a route lacks; as
acme (full token, and one scoped to its staging environment) or other, in
either API version. After every step (`Observed`): nothing answered 5xx,
every error was a JSON:API error document, and everything both accounts
list equals the model, so a refusal changed nothing anywhere.

The default run is small (12 examples of up to 40 steps, about 15 s on the
2-core reference machine, ~25 s beside other work);
`JOBSD_MODEL_EXAMPLES=500` runs a long search (add `JOBSD_MODEL_NOSHRINK=1`
to see a failure at once rather than after minutes of shrinking).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from jobsd.config import token_sha256
from tests.api_model_docs import (
    CREATE_IDS,
    CRONS,
    NEW,
    NEW_JOB_MUTATIONS,
    SEED,
    SEED_JOB_MUTATIONS,
    SLUGS,
    URLS,
    JobFields,
    Mutation,
    encoded,
    job_document,
    job_fields,
)
from tests.api_model_host import ApiHost, Reply
from tests.api_model_lists import ListRules
from tests.api_model_probes import ProbeRules
from tests.api_model_runs import MAX_PENDING, VERSIONS, RunAndPolicyRules
from tests.api_model_state import (
    STAGING_TOKEN,
    WHO,
    Caller,
    ModelJob,
    ModelRun,
    accounts,
    call,
    job_row,
    observe_account,
    observe_scoped_runs,
    seed_scoped,
)

ACME = f"""environments = ["production", "staging"]
[[accounts.scoped_tokens]]
sha256 = "{token_sha256(STAGING_TOKEN)}"
environments = ["staging"]
"""


class ApiModel(ListRules, ProbeRules, RunAndPolicyRules, RuleBasedStateMachine):
    """See the module note."""

    def __init__(self) -> None:
        super().__init__()
        # acme's plan allows 3 active jobs and 4 pending runs, so refusals for
        # limits happen within a few steps; other's plan has no limits.
        self.host = ApiHost(
            acme=ACME, active_jobs_limit=3, scheduler=f"max_pending_runs = {MAX_PENDING}", workers=2
        )
        self.callers = accounts()
        self.acme, self.scoped, self.other = self.callers.values()
        self.generations = 0

    def teardown(self) -> None:
        self.host.close()

    def expect(
        self,
        reply: Reply,
        allowed: set[int] | frozenset[int],
        what: str,
        caller: Caller,
        version: str | None,
    ) -> None:
        if seed_scoped(caller, version):
            allowed = {403}
        event(f"{what}: {reply.status}")  # --hypothesis-show-statistics shows what was reached
        assert reply.status in allowed, (what, reply.status, sorted(allowed), reply.body)

    def admitted(self, caller: Caller) -> int:
        """200, or 429 once the caller's own account holds `max_pending_runs` (4)
        PENDING runs: never because of the other account's."""
        pending = sum(run.status == "PENDING" for run in caller.account.runs.values())
        return 429 if pending >= MAX_PENDING else 200

    def slug(self, data: st.DataObject, caller: Caller) -> str:
        """A slug of the caller's jobs more often than not, else any (maybe another's)."""
        mine = sorted(caller.account.jobs)
        own: bool = data.draw(st.booleans())
        if mine and own:
            return data.draw(st.sampled_from(mine))
        return data.draw(st.sampled_from(SLUGS))

    @initialize()
    def some_jobs(self) -> None:
        """Each account starts with jobs under the same slug, so every step that
        names one risks reaching the other account's."""
        starts = [
            (self.acme, "a", SEED, JobFields("Warm", URLS[0], CRONS[0], None, False)),
            (self.acme, "b", NEW, JobFields("By hand", URLS[1], None, None, False)),
            (self.other, "a", SEED, JobFields("Theirs", URLS[2], CRONS[1], None, False)),
        ]
        for caller, slug, version, fields in starts:
            body = encoded(job_document(slug, fields, version, caller is self.acme))
            reply = call(self.host, caller, "POST", "/api/v1/jobs", version=version, body=body)
            assert reply.status == 201, reply.body
            self.generations += 1
            caller.account.jobs[slug] = ModelJob(fields, None, self.generations)
        for _ in range(MAX_PENDING - 1):  # one run-now short of acme's bound
            self.run_seed("acme")

    @rule(who=st.sampled_from(["acme", "other"]))
    def run_seed(self, who: str) -> None:
        """Run now through the seed version, which runs even a paused job: the
        plain way runs pile up towards `max_pending_runs`."""
        caller = self.callers[who]
        reply = call(self.host, caller, "POST", "/api/v1/jobs/a/actions/run")
        job = caller.account.jobs.get("a")
        # a manual job (made so through 2026-08-07) is not one the seed version knows
        missing = job is None or job.fields.kind == "manual"
        allowed = {404} if missing else {self.admitted(caller)}
        self.expect(reply, allowed, "run now (seed)", caller, NEW)
        if reply.status == 200:
            assert job is not None
            self.run_model(caller, reply, "a", job.generation)

    def run_model(self, caller: Caller, reply: Reply, slug: str, generation: int) -> None:
        """Remember the run a 200 answered with, in the environment the full token reads."""
        run_id = reply.body["data"]["id"]
        assert reply.body["data"]["attributes"]["status"] == "PENDING"
        full = self.acme if caller.account is self.acme.account else self.other
        read = call(self.host, full, "GET", f"/api/v1/runs/{run_id}", version=NEW)
        environment = read.body["data"]["attributes"]["environment"]
        caller.account.runs[run_id] = ModelRun(slug, generation, environment)

    @rule(data=st.data(), version=VERSIONS, slug=st.sampled_from(SLUGS), enabled=st.booleans())
    def create_job(
        self, data: st.DataObject, version: str | None, slug: str, enabled: bool
    ) -> None:
        caller = self.callers[data.draw(WHO)]
        fields = data.draw(job_fields(version or SEED))
        account = caller.account
        env = "staging" if caller.scoped else "production"
        doc = job_document(slug, fields, version or SEED, enabled, env)
        reply = call(self.host, caller, "POST", "/api/v1/jobs", version=version, body=encoded(doc))
        # Where several refusals apply, which one answers is open.
        allowed = {409} if slug in account.jobs else set()
        if fields.retry_policy is not None and fields.retry_policy not in account.policies:
            allowed.add(422)
        if not allowed:
            allowed = {201} | ({403} if account is self.acme.account else set())
            allowed |= {403, 422} if caller.scoped else set()
        self.expect(reply, allowed, "create", caller, version)
        if reply.status == 201:
            self.generations += 1
            job = ModelJob(fields, fields.retry_policy, self.generations)
            assert job_row(reply.body["data"]) == job.row(), reply.body
            account.jobs[slug] = job

    @rule(data=st.data(), version=VERSIONS, enabled=st.booleans())
    def replace_job(self, data: st.DataObject, version: str | None, enabled: bool) -> None:
        caller = self.callers[data.draw(WHO)]
        slug = self.slug(data, caller)
        fields = data.draw(job_fields(version or SEED))
        account = caller.account
        env = "staging" if caller.scoped else "production"
        doc = job_document(slug, fields, version or SEED, enabled, env)
        path = f"/api/v1/jobs/{slug}"
        reply = call(self.host, caller, "PUT", path, version=version, body=encoded(doc))
        job = account.jobs.get(slug)
        missing = job is None or (version in (None, SEED) and job.fields.kind == "manual")
        allowed = {404} if missing else set()
        if fields.retry_policy is not None and fields.retry_policy not in account.policies:
            allowed.add(422)
        if not allowed:
            allowed = {200} | ({403} if account is self.acme.account else set())
            allowed |= {403, 422} if caller.scoped else set()
        self.expect(reply, allowed, "replace", caller, version)
        if reply.status == 200:
            assert job is not None
            if fields.sends_policy:
                policy = fields.retry_policy
            else:  # the seed version keeps its extension attribute; 2026-08-07 replaces it
                policy = job.retry_policy if version in (None, SEED) else None
            job.fields, job.retry_policy, job.version = fields, policy, job.version + 1
            assert job_row(reply.body["data"]) == job.row(), reply.body

    @rule(data=st.data(), version=VERSIONS, put=st.booleans())
    def spoil_job(self, data: st.DataObject, version: str | None, put: bool) -> None:
        """A bad job document, created or replacing: refused, and nothing changes."""
        caller = self.callers[data.draw(WHO)]
        slug = self.slug(data, caller)
        mutations = NEW_JOB_MUTATIONS if version == NEW else SEED_JOB_MUTATIONS
        mutation: Mutation = data.draw(st.sampled_from(mutations + ([] if put else CREATE_IDS)))
        fields = data.draw(job_fields(version or SEED))
        doc = job_document(slug, fields, version or SEED, True)
        self.send_spoilt(caller, version, mutation, doc, "/api/v1/jobs", slug, put)

    @rule(data=st.data(), version=VERSIONS)
    def delete_job(self, data: st.DataObject, version: str | None) -> None:
        caller = self.callers[data.draw(WHO)]
        slug = self.slug(data, caller)
        account = caller.account
        reply = call(self.host, caller, "DELETE", f"/api/v1/jobs/{slug}", version=version)
        job = account.jobs.get(slug)
        if job is None:
            allowed = {404}
        elif version in (None, SEED) and job.fields.kind == "manual":
            allowed = {204, 404}
        else:
            allowed = {204} | ({403} if caller.scoped else set())
        self.expect(reply, allowed, "delete", caller, version)
        if reply.status == 204:
            assert job is not None
            del account.jobs[slug]
            for run in account.runs.values():
                if run.generation == job.generation and run.status == "PENDING":
                    run.status = "CANCELED"

    @rule(data=st.data(), version=VERSIONS)
    def run_now(self, data: st.DataObject, version: str | None) -> None:
        caller = self.callers[data.draw(WHO)]
        slug = self.slug(data, caller)
        account = caller.account
        named = data.draw(st.sampled_from([None, "production", "staging", "nowhere"]))
        body = None if named is None or version != NEW else encoded({"environment": named})
        path = f"/api/v1/jobs/{slug}/actions/run"
        reply = call(self.host, caller, "POST", path, version=version, body=body)
        job = account.jobs.get(slug)
        reachable = ("staging",) if caller.scoped else account.environments
        if job is None or (version in (None, SEED) and job.fields.kind == "manual"):
            allowed = {404}
        elif body is not None and named not in reachable:
            allowed = {422}
        else:
            allowed = {self.admitted(caller)} | ({404, 422} if caller.scoped else set())
            # 2026-08-07 runs a job only where it is enabled: 409, or 422 when none is named
            allowed |= {409, 422} if version == NEW else set()
        self.expect(reply, allowed, "run now", caller, version)
        if reply.status == 200:
            assert job is not None
            self.run_model(caller, reply, slug, job.generation)

    @invariant()
    def observed(self) -> None:
        """Everything either account lists equals the model."""
        observe_account(self.host, self.acme)
        observe_account(self.host, self.other)
        observe_scoped_runs(self.host, self.scoped)


def _examples() -> int:
    return int(os.environ.get("JOBSD_MODEL_EXAMPLES", "12"))


ApiModel.TestCase.settings = settings(
    max_examples=_examples(),
    stateful_step_count=40,
    deadline=None,
    # explain re-runs every step of a failure many times: minutes, for little
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target]
    + ([] if os.environ.get("JOBSD_MODEL_NOSHRINK") else [Phase.shrink]),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestApiModel = ApiModel.TestCase
