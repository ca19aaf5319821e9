"""Model-based test of the books: random sequences of operations, the service against a plain-Python model.

A hypothesis RuleBasedStateMachine runs each operation on the service — through the API with a platform
key (the DRF test client) where a route exists, through the service behind the beat task otherwise — and
on the model in creditservice/testing/books_model.py: fund, debit, reserve (an amount or an hourly cost),
commit (all, part, nothing, too much), release, travel in time (expiry, billing windows, Idempotency-Key
lifetimes), the expiry beat, push usage events (resent ones too), (re-)collect a window's usage (lower
than before too), bill a window, change a price, set a budget and a quota, the lifecycle sweep, start a
card top-up and deliver (and redeliver) Stripe's signed webhook, replay an Idempotency-Key with the same
body, another body and on another endpoint. After every step the database equals the model — wallet
balance and reserved as stored and as seen, project status, each reservation's status, quotas, charges
per window, every transfer, usage records, budget spend, top-ups — and I1–I4 hold
(creditservice.testing.invariants.assert_books_balance). I2 is also checked exactly: a reservation or a
debit that is let through leaves available >= 0. A `read_through_the_api` step compares what callers
read (wallet, reservations, quotas, budget, charges) with the model too.

Each example is one transaction rolled back at its end (a savepoint inside the test's own transaction),
so every example starts from the same database in microseconds, and the model starts empty. Nothing
here needs a real commit: the callbacks a commit would run (transaction.on_commit: the lifecycle's
funded hooks) are run at the end of each step, as a commit would. The other ways were slower or
leakier: a transactional test flushes (and re-ships) every table per example, and fresh projects per
example would share the global rows (billing runs per window, prices) between examples. Time stands
still (time_machine, tick=False) at a fixed start near a month's end, and moves one second per step
and when the `travel` rule says.

Sizes: 25 sequences × 30 steps locally (about 7 s on SQLite, 15 s on PostgreSQL here); under CI=true
200 × 50 on PostgreSQL (about 2.5 minutes) and 50 × 50 on SQLite (about 25 s). BOOKS_EXAMPLES and
BOOKS_STEPS override both; BOOKS_STATS=1 (with -s) prints which operations and answers the run covered.

Replaying a failure: a failing run prints the steps and a line `@reproduce_failure('<version>', b'…')`;
put that decorator (from hypothesis import reproduce_failure) on `BooksMachine` and run this test again
to replay exactly that example. A whole run is repeated with a fixed seed:
`pytest creditservice/tests/test_model_books.py --hypothesis-seed=<n>`. Locally, failing examples are
also kept under var/hypothesis-books/ (not in the repository) and tried first on the next run.
"""

import json
import os
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from django.conf import settings as django_settings
from django.db import transaction
from django.test import Client, TestCase
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from billing.models import Charge
from billing.services.lifecycle import lifecycle_sweep
from billing.services.runs import billing_run_execute
from creditservice.startup import POSTGRESQL_ENGINE
from creditservice.testing import books_model as model
from creditservice.testing.books_model import MICROS, PICOS, Outcome, text, window_of
from creditservice.testing.fixtures import ServiceClient
from creditservice.testing.invariants import assert_books_balance
from metering.models import Price, UsageRecord
from metering.services import PriceHistoryProtected, price_version_add, usage_records_store
from payments.models import CheckoutSession
from payments.tests.signing import signed_body
from quotas.models import Budget, Quota, Reservation, ResourceType
from quotas.selectors import budget_status
from quotas.services import reservations_expire
from wallets.models import Account, Project, Transfer
from wallets.selectors import wallet_figures
from wallets.tests.factories import platform_key

pytestmark = pytest.mark.django_db

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
DATABASE = DirectoryBasedExampleDatabase(str(Path(__file__).resolve().parents[2] / "var" / "hypothesis-books"))


def _profile(name: str, examples: int, steps: int, database) -> None:
    settings.register_profile(
        name, max_examples=int(os.environ.get("BOOKS_EXAMPLES", examples)),
        stateful_step_count=int(os.environ.get("BOOKS_STEPS", steps)), deadline=None, database=database,
        derandomize=False, print_blob=True, suppress_health_check=[HealthCheck.too_slow],
    )


_profile("books-ci-postgresql", 200, 50, None)
_profile("books-ci-sqlite", 50, 50, None)
_profile("books-local", 25, 30, DATABASE)

# Near a month's end (budgets are per calendar month), between two window boundaries.
START = datetime(2026, 11, 30, 21, 17, 30, tzinfo=UTC)
SLUGS = ("alpha", "beta")
# Resource types the model uses: a duration type priced per unit-hour and a count type priced per unit.
TYPES = {"vm": "unit_hour", "network_egress_gib": "unit"}
HOUR = timedelta(hours=1)

credits = st.one_of(st.sampled_from([1, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000, 25_000_000]),
                    st.integers(1, 40_000_000))
hold_amounts = st.sampled_from([0, 1, 1_000_000, 2_500_000, 10_000_000, 30_000_000, "all available"])
hourly_costs = st.sampled_from([10_000, 40_000, 500_000, 1_000_000])
quantities = st.sampled_from([500_000, 1_000_000, 2_000_000, 3_000_000])
usage_quantities = st.sampled_from([0, 1, 250_000, 1_000_000, 10_000_000, 100_000_000, 1_000_000_000])
ttls = st.sampled_from([1, 30, 300, 3600, 86400])


@dataclass
class Context:
    """What every example shares: the API caller, the fake Stripe, the model's settings and the prices."""

    api: ServiceClient
    stripe: object
    rules: model.Rules
    types: dict[str, int]  # code → id


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _prices(types: dict[str, int]) -> dict[str, list[tuple[datetime, int]]]:
    versions: dict[str, list[tuple[datetime, int]]] = {}
    for code, type_id in types.items():
        rows = Price.objects.filter(resource_type_id=type_id).order_by("effective_from")
        assert all(row.per == TYPES[code] for row in rows), "the model prices vm per unit-hour and egress per unit"
        versions[code] = [(row.effective_from, row.unit_price) for row in rows]
    return versions


class BooksMachine(RuleBasedStateMachine):
    context: Context

    def __init__(self):
        super().__init__()
        context = self.context
        self.api, self.stripe, self.types = context.api, context.stripe, context.types
        # The example's own transaction, rolled back in teardown(). Marked as the test case's own blocks are:
        # it isolates examples, it is not a transaction of the code under test (which may open durable ones
        # and call Stripe outside its own).
        self._atomic = transaction.atomic()
        self._atomic._from_testcase = True
        self._atomic.__enter__()
        self._travel = time_machine.travel(START, tick=False)
        self.clock = self._travel.start()
        self.stripe.reset()
        self.books = model.Books(context.rules, _prices(self.types))
        self.keys = 0
        self.requests: list[tuple[str, dict, str]] = []  # credits, debits, top-ups: (path, body, key)
        self.reservation_requests: list[tuple[dict, str]] = []
        self.event_ids: dict[str, list[str]] = {slug: [] for slug in SLUGS}
        self.webhooks: list[dict] = []  # Stripe events delivered
        self.ids: dict[str, int] = {}
        for slug in SLUGS:
            response = self.api.post("/api/v1/projects/", {"slug": slug, "name": slug.title()}, format="json")
            assert response.status_code == 201, response.content
            self.books.project_create(slug)
        self.ids = dict(Project.objects.filter(slug__in=SLUGS).values_list("slug", "id"))

    def teardown(self):
        self._travel.stop()
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    # --- plumbing ------------------------------------------------------------------------------
    @property
    def now(self) -> datetime:
        return datetime.now(UTC)

    def new_key(self) -> str:
        self.keys += 1
        return f"model-{self.keys}"

    def tick(self) -> datetime:
        """Each operation happens a second after the one before."""
        self.clock.shift(1)
        return self.now

    @contextmanager
    def step(self):
        """One operation, with what its commit would run (transaction.on_commit) run at its end."""
        with TestCase.captureOnCommitCallbacks(execute=True):
            yield

    def post(self, path: str, body: dict | None, key: str | None = None):
        extra = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
        response = self.api.post(path, body, format="json", **extra)
        assert response.status_code < 500, (path, body, response.status_code, response.content[:500])
        return response

    def put(self, path: str, body: dict):
        response = self.api.put(path, body, format="json")
        assert response.status_code < 500, (path, body, response.status_code, response.content[:500])
        return response

    @staticmethod
    def expect(response, outcome: Outcome, what: str) -> dict:
        body = response.json()
        covered(f"{what.split(' ')[0].rsplit('/', 1)[-1]}: {response.status_code} {body.get('error') or ''}")
        assert response.status_code == outcome.status, (what, outcome, response.status_code, body)
        if outcome.error:
            assert body.get("error") == outcome.error, (what, outcome, body)
        for name, value in outcome.extra.items():
            assert body.get(name) == value, (what, name, value, body)
        return body

    def wallet_answer_matches(self, slug: str, body: dict) -> None:
        seen = self.books.available(slug, self.now)
        assert (body["balance"], body["reserved"], body["available"], body["status"]) == (
            text(self.books.projects[slug].balance), text(self.books.reserved(slug, self.now)), text(seen),
            self.books.projects[slug].status), (slug, body)

    # --- keyed writes: credits, debits, top-ups -------------------------------------------------
    def keyed(self, path: str, body: dict, key: str) -> None:
        """A credit, debit or top-up under an Idempotency-Key: a replay, a 422 or a new effect."""
        fingerprint = (path, json.dumps(body, sort_keys=True))
        now = self.tick()
        earlier = self.books.key_claim(key, fingerprint, now)
        with self.step():
            response = self.post(path, body, key)
            answer = response.json()
        self.requests.append((path, body, key))
        if isinstance(earlier, Outcome):
            self.expect(response, earlier, f"{path} with a used key and another request")
            return
        if earlier is not None:
            covered("key replayed")
            assert (response.status_code, answer) == earlier.answer, ("replay", path, answer, earlier.answer)
            assert response["Idempotent-Replayed"] == "true"
            return
        slug, action = path.split("/")[4], path.rsplit("/", 1)[1]
        amount = model_amount(body["amount"])
        if action == "credit":
            outcome = self.books.credit(slug, amount, now)
        elif action == "debit":
            outcome = self.books.debit(slug, amount, now)
        else:
            outcome = self.books.topup_start(slug, now)
        self.expect(response, outcome, path)
        self.books.key_settle(key, fingerprint, now, response.status_code, answer)
        if response.status_code != 201:
            return
        if action == "checkout-sessions":
            self.books.topup_created(answer["id"], slug, amount, now)
            assert answer["amount"] == text(amount) and answer["funded"] is False, answer
            return
        self.wallet_answer_matches(slug, answer)
        if action == "debit":  # I2: a debit never takes available below zero
            assert self.books.available(slug, now) >= 0 and self.books.available(slug) >= 0

    # --- rules: wallets -------------------------------------------------------------------------
    @initialize(amounts=st.tuples(*[st.sampled_from([0, 10_000_000, 50_000_000, 200_000_000])] * len(SLUGS)))
    def opening_balances(self, amounts):
        for slug, amount in zip(SLUGS, amounts, strict=True):
            if amount:
                self.fund(slug, amount)

    @rule(slug=st.sampled_from(SLUGS), amount=credits)
    def fund(self, slug, amount):
        self.keyed(f"/api/v1/projects/{slug}/wallet/credit", {"amount": text(amount), "reason": "model credit"},
                   self.new_key())

    @rule(slug=st.sampled_from(SLUGS), amount=st.one_of(credits, st.just("all available")))
    def debit(self, slug, amount):
        if amount == "all available":
            amount = max(self.books.available(slug, self.now), 1)
        self.keyed(f"/api/v1/projects/{slug}/wallet/debit", {"amount": text(amount), "reason": "model debit"},
                   self.new_key())

    @precondition(lambda self: self.requests)
    @rule(data=st.data(), how=st.sampled_from(["same", "other body", "other endpoint"]))
    def replay_key(self, data, how):
        path, body, key = data.draw(st.sampled_from(self.requests), label="earlier request")
        if how == "other body":
            body = {**body, "amount": text(model_amount(body["amount"]) + MICROS)}
        elif how == "other endpoint":
            ends = {"credit": "debit", "debit": "credit"}
            end = path.rsplit("/", 1)[1]
            path = path.rsplit("/", 1)[0] + "/" + ends[end] if end in ends else path.replace(
                f"/projects/{path.split('/')[4]}/", f"/projects/{other(path.split('/')[4])}/")
        self.keyed(path, body, key)

    # --- rules: admission -----------------------------------------------------------------------
    @rule(slug=st.sampled_from(SLUGS), code=st.sampled_from(sorted(TYPES)), quantity=quantities,
          amount=st.one_of(hold_amounts.map(lambda a: ("amount", a)), hourly_costs.map(lambda c: ("hourly_cost", c))),
          ttl=ttls)
    def reserve(self, slug, code, quantity, amount, ttl):
        field, value = amount
        if value == "all available":
            value = max(self.books.available(slug, self.now), 0)
        body = {"project": slug, "resource_type": code, "quantity": text(quantity), field: text(value),
                "ttl_seconds": ttl}
        self.reserve_with(body, self.new_key())

    @rule(slug=st.sampled_from(SLUGS), code=st.sampled_from(sorted(TYPES)), quantity=quantities,
          amount=st.one_of(hold_amounts.map(lambda a: ("amount", a)), hourly_costs.map(lambda c: ("hourly_cost", c))),
          ttl=ttls)
    def reserve_another(self, slug, code, quantity, amount, ttl):
        """The same as reserve: a second rule so that holds are drawn more often than the rest."""
        self.reserve(slug, code, quantity, amount, ttl)

    @precondition(lambda self: self.reservation_requests)
    @rule(data=st.data(), same=st.booleans())
    def replay_reservation_key(self, data, same):
        body, key = data.draw(st.sampled_from(self.reservation_requests), label="earlier reservation")
        self.reserve_with(body if same else {**body, "quantity": text(model_amount(body["quantity"]) + MICROS)}, key)

    def reserve_with(self, body: dict, key: str) -> None:
        slug, now = body["project"], self.tick()
        amount = (model_amount(body["amount"]) if "amount" in body
                  else model_amount(body["hourly_cost"]) * self.books.rules.min_runtime_hours)
        outcome, hold = self.books.reserve(slug=slug, code=body["resource_type"], quantity=model_amount(body["quantity"]),
                                           amount=amount, ttl=body["ttl_seconds"], key=key, body=body, now=now)
        with self.step():
            response = self.post("/api/v1/reservations", body, key)
        self.reservation_requests.append((body, key))
        refusal = outcome if outcome.status != 201 else Outcome(201)
        answer = self.expect(response, refusal, f"reserve {body}")
        if outcome.status != 201:
            return
        if outcome.extra.get("replayed"):
            assert answer == hold.answer and response["Idempotent-Replayed"] == "true", (answer, hold.answer)
            return
        assert (answer["status"], answer["amount"], answer["quantity"], answer["expires_at"]) == (
            "pending", text(amount), body["quantity"], _iso(now + timedelta(seconds=body["ttl_seconds"]))), answer
        self.books.hold_created(hold, answer["id"], answer)
        # I2: a hold never takes available below zero.
        assert self.books.available(slug, now) >= 0 and self.books.available(slug) >= 0

    def draw_hold(self, data):
        """Mostly a pending one (the interesting case), sometimes any (ended ones answer 409 or repeat)."""
        pending = sorted(h.id for h in self.books.holds.values() if h.status == model.PENDING)
        choices = pending if pending and data.draw(st.integers(0, 3), label="pending?") else sorted(self.books.holds)
        return self.books.holds[data.draw(st.sampled_from(choices), label="reservation")]

    @precondition(lambda self: self.books.holds)
    @rule(data=st.data(), how=st.sampled_from(["all", "nothing", "part", "exactly", "too much"]))
    def commit(self, data, how):
        hold = self.draw_hold(data)
        amount = {"all": None, "nothing": 0, "exactly": hold.amount, "too much": hold.amount + 1,
                  "part": data.draw(st.integers(0, hold.amount), label="part")}[how]
        outcome = self.books.commit(hold.id, amount, self.tick())
        with self.step():
            response = self.post(f"/api/v1/reservations/{hold.id}/commit", {} if amount is None else {"amount": text(amount)})
        answer = self.expect(response, outcome, f"commit {how} of {hold}")
        if outcome.status == 200:
            assert (answer["status"], answer["committed_amount"]) == ("committed", text(hold.committed_amount)), answer

    @precondition(lambda self: self.books.holds)
    @rule(data=st.data(), how=st.sampled_from(["all", "nothing", "part", "exactly", "too much"]))
    def commit_another(self, data, how):
        """The same as commit, drawn more often."""
        self.commit(data, how)

    @precondition(lambda self: self.books.holds)
    @rule(data=st.data())
    def release(self, data):
        hold = self.draw_hold(data)
        covered(f"release of a {hold.seen_status(self.now)} hold of a project in {self.books.projects[hold.slug].status}")
        outcome = self.books.release(hold.id, self.tick())
        with self.step():
            response = self.post(f"/api/v1/reservations/{hold.id}/release", None)
        answer = self.expect(response, outcome, f"release of {hold}")
        if outcome.status == 200:
            assert answer["status"] == "released", answer

    @precondition(lambda self: self.books.holds)
    @rule(data=st.data())
    def release_another(self, data):
        """The same as release, drawn more often."""
        self.release(data)

    @rule(data=st.data(), slug=st.sampled_from(SLUGS), which=st.sampled_from(["quota", "budget"]))
    def set_limit(self, data, slug, which):
        if which == "quota":
            self.set_quota(slug, data.draw(st.sampled_from(sorted(TYPES)), label="type"),
                           data.draw(st.sampled_from([None, 0, 1_000_000, 2_500_000, 10_000_000]), label="limit"))
        else:
            self.set_budget(slug, data.draw(st.sampled_from([None, 0, 5_000_000, 20_000_000, 100_000_000]), label="limit"))

    def set_quota(self, slug, code, limit):
        self.tick()
        outcome = self.books.quota_set(slug, code, limit)
        with self.step():
            response = self.put(f"/api/v1/projects/{slug}/quotas/{code}", {"limit": text(limit)})
        self.expect(response, outcome, "quota")

    def set_budget(self, slug, hard_limit):
        self.tick()
        outcome = self.books.budget_set(slug, hard_limit)
        with self.step():
            response = self.put(f"/api/v1/projects/{slug}/budget", {"hard_limit": text(hard_limit), "soft_limit": None})
        self.expect(response, outcome, "budget")

    # --- rules: time and the beat ---------------------------------------------------------------
    @rule(seconds=st.sampled_from([1, 29, 299, 301, 600, 3599, 3600, 3 * 3600, 25 * 3600, 49 * 3600]))
    def travel(self, seconds):
        self.clock.shift(seconds)

    @rule()
    def expiry_beat(self):
        now = self.tick()
        with self.step():
            reservations_expire()
        self.books.expire_overdue(now)

    @rule()
    def lifecycle_beat(self):
        self.tick()
        with self.step():
            lifecycle_sweep()
        self.books.sweep(self.now)

    # --- rules: usage and billing ---------------------------------------------------------------
    @rule(data=st.data(), slug=st.sampled_from(SLUGS), count=st.integers(1, 3))
    def push_usage(self, data, slug, count):
        self.tick()
        events, expected = [], []
        for _ in range(count):
            earlier = self.event_ids[slug]
            event_id = (data.draw(st.sampled_from(earlier), label="resent id") if earlier and data.draw(st.booleans())
                        else f"ev-{len(earlier) + 1}-{self.keys}")
            earlier.append(event_id)
            # Late usage is the interesting kind: often into a window that already has usage (maybe billed).
            used = sorted({w for (s, _, w, _) in self.books.usage if s == slug and w >= self.now - 47 * HOUR})
            offset = data.draw(st.sampled_from([0, -1800, -7200, -47 * 3600, -49 * 3600, 240, 360, "a used window"]),
                               label="offset")
            if offset != "a used window":
                at = self.now + timedelta(seconds=offset)
            elif used:
                at = data.draw(st.sampled_from(used), label="window") + timedelta(minutes=data.draw(st.integers(0, 59)))
            else:
                at = self.now
            events.append({"id": event_id, "project": slug, "resource_type": data.draw(st.sampled_from(sorted(TYPES))),
                           "quantity": text(data.draw(usage_quantities, label="quantity")), "timestamp": _iso(at)})
        with self.step():
            response = self.post("/api/v1/usage/events", {"events": events})
        now = self.now
        for event in events:
            expected.append(self.books.push(slug=slug, code=event["resource_type"], event_id=event["id"],
                                            quantity=model_amount(event["quantity"]),
                                            at=datetime.fromisoformat(event["timestamp"]), now=now))
        answer = self.expect(response, Outcome(200), "usage events")
        seen = [r["status"] if r["status"] != "rejected" else r["reason"] for r in answer["results"]]
        assert seen == expected, (events, answer, expected)

    @rule(data=st.data(), slug=st.sampled_from(SLUGS), count=st.integers(1, 3))
    def push_usage_again(self, data, slug, count):
        """The same as push_usage, drawn more often: billing has something to charge."""
        self.push_usage(data, slug, count)

    @rule(slug=st.sampled_from(SLUGS), code=st.sampled_from(sorted(TYPES)),
          back=st.one_of(st.integers(1, 3), st.integers(1, 50)), quantity=usage_quantities)
    def collect_usage(self, slug, code, back, quantity):
        """The collector stores a closed window's value (the last few windows mostly, as billing bills them)."""
        self.tick()
        self.collect(slug, code, window_of(self.now) - back * HOUR, quantity)

    @precondition(lambda self: any(r.quantity for (_, _, _, source), r in self.books.usage.items()
                                   if source == model.COLLECTED))
    @rule(data=st.data())
    def recollect_lower(self, data):
        """A window collected again comes back lower (the metrics store had counted too much)."""
        self.tick()
        slug, code, window, _ = data.draw(st.sampled_from(sorted(
            key for key, r in self.books.usage.items() if key[3] == model.COLLECTED and r.quantity)), label="window")
        current = self.books.usage[(slug, code, window, model.COLLECTED)].quantity
        self.collect(slug, code, window, data.draw(st.integers(0, current - 1), label="lower quantity"))

    def collect(self, slug: str, code: str, window: datetime, quantity: int) -> None:
        with self.step():
            usage_records_store(resource_type_id=self.types[code], window_start=window, window_end=window + HOUR,
                                quantities={self.ids[slug]: quantity}, source=UsageRecord.Source.PROMETHEUS,
                                source_reference="model")
        self.books.collect(slug=slug, code=code, window=window, quantity=quantity, now=self.now)

    @rule(data=st.data(), which=st.sampled_from(["a window with usage", "the last closed window", "any window"]))
    def bill(self, data, which):
        now = self.tick()
        used = sorted({w for (_, _, w, _) in self.books.usage if w + HOUR <= now and w >= now - 51 * HOUR})
        if which == "a window with usage" and used:
            window = data.draw(st.sampled_from(used), label="window")
        elif which == "the last closed window":
            window = window_of(now) - HOUR
        else:
            window = window_of(now) - data.draw(st.integers(1, 51), label="hours back") * HOUR
        with self.step():
            outcome = billing_run_execute(window_start=window, trigger="model")
        assert outcome.claimed and outcome.run.status == "succeeded", outcome.message
        kinds = Counter(c.kind for charges in self.books.charges.values() for c in charges)
        self.books.bill(window, self.now)
        for kind in Counter(c.kind for charges in self.books.charges.values() for c in charges) - kinds:
            covered(f"charge {kind}")

    @rule(data=st.data(), which=st.sampled_from(["a window with usage", "the last closed window", "any window"]))
    def bill_again(self, data, which):
        """The same as bill, drawn more often: late usage and re-collections meet a billed window."""
        self.bill(data, which)

    @rule(code=st.sampled_from(sorted(TYPES)), price=st.sampled_from([0, 1_000_000_000, 40_000_000_000, 2 * PICOS]),
          offset=st.sampled_from([0, 600, 3600, 5400]))
    def change_price(self, code, price, offset):
        effective_from = self.tick() + timedelta(seconds=offset)
        expected = self.books.price_change(code, price, effective_from)
        try:
            with self.step():
                price_version_add(resource_type=ResourceType.objects.get(id=self.types[code]), unit_price=price,
                                  per=TYPES[code], effective_from=effective_from, actor="model")
        except PriceHistoryProtected:
            assert expected.status == 409, expected
        else:
            assert expected.status == 201, expected

    # --- rules: card top-ups and Stripe's webhook -----------------------------------------------
    @rule(slug=st.sampled_from(SLUGS), amount=st.sampled_from([5_000_000, 12_500_000, 25_000_000, 100_010_000]))
    def top_up(self, slug, amount):
        self.keyed(f"/api/v1/projects/{slug}/checkout-sessions", {"amount": text(amount)}, self.new_key())

    @precondition(lambda self: self.books.topups)
    @rule(data=st.data())
    def stripe_pays(self, data):
        session_id = data.draw(st.sampled_from(sorted(self.books.topups)), label="session")
        self.stripe.pay(session_id)
        self.deliver(self.stripe.event("checkout.session.completed", self.stripe.sessions[session_id]))

    @precondition(lambda self: self.webhooks)
    @rule(data=st.data(), again=st.booleans())
    def stripe_redelivers(self, data, again):
        """The same event again, or another event saying the same (Stripe promises at least once)."""
        event = data.draw(st.sampled_from(self.webhooks), label="event")
        self.deliver(event if again else {**event, "id": f"{event['id']}-again"})

    def deliver(self, event: dict) -> None:
        self.tick()
        payload, signature = signed_body(event)
        with self.step():
            response = Client().post("/stripe/webhook", payload, content_type="application/json",
                                     HTTP_STRIPE_SIGNATURE=signature)
        assert response.status_code == 200, response.content
        answer = response.json()
        assert answer["status"] == "processed" and answer["duplicate"] == (event in self.webhooks), answer
        self.webhooks.append(event)
        self.books.topup_paid(event["data"]["object"]["id"], self.now)

    # --- reads: what callers see equals the model ------------------------------------------------
    @rule(slug=st.sampled_from(SLUGS))
    def read_through_the_api(self, slug):
        """The wallet, reservations, quotas, budget and charges as the API answers them."""
        books, now = self.books, self.now
        project = books.projects[slug]
        wallet = self.get(f"/api/v1/projects/{slug}/wallet")
        self.wallet_answer_matches(slug, wallet)
        listed = self.get(f"/api/v1/projects/{slug}/reservations?page_size=200")["results"]
        assert {r["id"]: (r["status"], r["committed_amount"]) for r in listed} == {
            h.id: (h.seen_status(now), text(h.committed_amount)) for h in books.holds.values() if h.slug == slug}
        quotas = {q["resource_type"]: (q["limit"], q["used"], q["reserved"])
                  for q in self.get(f"/api/v1/projects/{slug}/quotas")}
        assert quotas == {code: (text(limit), text(project.quota_used[code]), text(books.quota_reserved(slug, code, now)))
                          for code, limit in project.quota_limits.items()}, quotas
        budget = self.get(f"/api/v1/projects/{slug}/budget")
        assert (budget["hard_limit"], budget["spent"]) == (
            (None, None) if project.budget is None else (text(project.budget), text(books.budget_spent(slug, now))))
        charges: dict[tuple, list] = {}
        for charge in reversed(self.get(f"/api/v1/projects/{slug}/charges")["results"]):
            key = (slug, charge["resource_type"], datetime.fromisoformat(charge["window_start"]))
            charges.setdefault(key, []).append((charge["kind"], charge["quantity"], charge["amount"]))
        expected = {key: [(c.kind, text(c.quantity), text(c.amount)) for c in listed]
                    for key, listed in books.charges.items() if key[0] == slug}
        assert {k: sorted(v) for k, v in charges.items()} == {k: sorted(v) for k, v in expected.items()}

    def get(self, path: str):
        response = self.api.get(path)
        assert response.status_code == 200, (path, response.status_code, response.content[:500])
        return response.json()

    # --- after every step: the database equals the model ----------------------------------------
    @invariant()
    def books_match_the_model(self):
        books, now = self.books, self.now
        by_id = {project_id: slug for slug, project_id in self.ids.items()}
        wallets = list(Account.objects.filter(project_id__in=by_id))
        seen = wallet_figures(wallets, now=now)
        for wallet in wallets:
            slug = by_id[wallet.project_id]
            assert (wallet.balance, wallet.reserved) == (books.projects[slug].balance, books.reserved(slug)), slug
            assert (seen[wallet.project_id].reserved, seen[wallet.project_id].available) == (
                books.reserved(slug, now), books.available(slug, now)), slug
        for slug, status, grace_until in Project.objects.filter(id__in=by_id).values_list("slug", "status", "grace_until"):
            covered(f"project {status}")
            assert (status, grace_until) == (books.projects[slug].status, books.projects[slug].grace_until), slug
        reservations = {row[0]: row[1:] for row in Reservation.objects.filter(project_id__in=by_id).values_list(
            "id", "status", "committed_amount", "amount", "quantity", "expires_at")}
        assert reservations == {h.id: (h.status, h.committed_amount, h.amount, h.quantity, h.expires_at)
                                for h in books.holds.values()}
        codes = {type_id: code for code, type_id in self.types.items()}
        quotas = {(by_id[p], codes[t]): (limit, used, reserved) for p, t, limit, used, reserved in Quota.objects.filter(
            project_id__in=by_id).values_list("project_id", "resource_type_id", "limit", "used", "reserved")}
        assert quotas == {(slug, code): (limit, project.quota_used[code], books.quota_reserved(slug, code))
                          for slug, project in books.projects.items() for code, limit in project.quota_limits.items()}
        # Quotas as callers see them (without holds past their expiry) are compared in read_through_the_api.
        budgets = dict(Budget.objects.filter(project_id__in=by_id).values_list("project_id", "hard_limit"))
        assert {by_id[p]: limit for p, limit in budgets.items()} == {
            slug: project.budget for slug, project in books.projects.items() if project.budget is not None}
        for project_id in budgets:  # the spend that admission counts against each budget
            assert budget_status(project_id, now).spent == books.budget_spent(by_id[project_id], now), by_id[project_id]
        charges: dict[tuple, list] = {}
        for p, t, start, kind, quantity, amount in Charge.objects.filter(project_id__in=by_id).order_by("id").values_list(
                "project_id", "resource_type_id", "window_start", "kind", "quantity", "amount"):
            charges.setdefault((by_id[p], codes[t], start), []).append(model.Charge(kind, quantity, amount))
        assert charges == books.charges
        transfers = {slug: Counter() for slug in self.ids}
        for p, kind, amount, credit_id, wallet_id in Transfer.objects.filter(project_id__in=by_id).values_list(
                "project_id", "kind", "amount", "credit_account_id", "project__wallet__id"):
            transfers[by_id[p]][(kind, amount if credit_id == wallet_id else -amount)] += 1
        assert transfers == {slug: +project.transfers for slug, project in books.projects.items()}
        usage = {(by_id[p], codes[t], start, source): quantity for p, t, start, source, quantity in UsageRecord.objects.filter(
            project_id__in=by_id).values_list("project_id", "resource_type_id", "window_start", "source", "quantity")}
        assert usage == {key: record.quantity for key, record in books.usage.items()}
        funded = dict(CheckoutSession.objects.filter(project_id__in=by_id).values_list("stripe_session_id", "transfer"))
        assert {s: t is not None for s, t in funded.items()} == {s: t.funded for s, t in books.topups.items()}
        assert_books_balance()


# What the runs covered (operation and answer, project states), printed at the end with BOOKS_STATS=1.
COVERED: Counter = Counter()


def covered(what: str) -> None:
    COVERED[what] += 1


def model_amount(value: str) -> int:
    """A decimal string the test wrote (text()) back to micro-units."""
    whole, _, fraction = value.partition(".")
    return int(whole) * MICROS + int(fraction.ljust(6, "0") or 0)


def other(slug: str) -> str:
    return SLUGS[1 - SLUGS.index(slug)]


# CI's 200 sequences take about 3.5 minutes on PostgreSQL here; a failure adds up to 5 minutes of shrinking.
@pytest.mark.timeout(1200 if CI else 600)
def test_the_books_equal_the_model_after_every_step(fake_stripe):
    fake_stripe.deliver_on_pay = False  # the test delivers Stripe's events itself, through the test client
    on_postgresql = django_settings.DATABASES["default"]["ENGINE"] == POSTGRESQL_ENGINE
    types = dict(ResourceType.objects.filter(code__in=TYPES).values_list("code", "id"))
    BooksMachine.context = Context(
        api=ServiceClient(platform_key()), stripe=fake_stripe, types=types,
        rules=model.Rules(
            min_runtime_hours=django_settings.MIN_RUNTIME_HOURS, grace=timedelta(hours=django_settings.GRACE_PERIOD_HOURS),
            idempotency_ttl=django_settings.IDEMPOTENCY_KEY_TTL, lateness=timedelta(hours=django_settings.USAGE_LATENESS_HOURS),
            lease=timedelta(seconds=django_settings.BILLING_RUN_LEASE_SECONDS),
            topups_per_hour=django_settings.CHECKOUT_SESSIONS_PER_PROJECT_PER_HOUR),
    )
    assert django_settings.BILLING_WINDOW_MINUTES == 60, "the model bills hour-long windows"
    profile = ("books-ci-postgresql" if on_postgresql else "books-ci-sqlite") if CI else "books-local"
    COVERED.clear()
    try:
        run_state_machine_as_test(BooksMachine, settings=settings.get_profile(profile))
    finally:
        if os.environ.get("BOOKS_STATS"):
            print("\n".join(f"{count:7d}  {what}" for what, count in sorted(COVERED.items())))
