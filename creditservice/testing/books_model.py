"""A plain-Python model of the books, for the model-based test (creditservice/tests/test_model_books.py).

The test drives the real service (its API, and the services behind the beat tasks) and this model with
the same random operations, and after every step compares the database with the model. The model is
written from what the README promises, not from the code, and imports nothing of the product: integers
throughout (micro-credits, micro-units, pico-credits per billing unit), its own rounding.

Holds are kept as the database stores them — a pending hold past its expiry stays pending until
something expires it: the expiry beat, or a reservation, debit, commit or release that needs it — and
are read as callers see them: such a hold is already free (`seen_status`, `available`). Both matter:
what is stored decides I4, what is seen decides admission.
"""

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

MICROS = 10**6  # micro-credits per credit, micro-units per unit
PICOS = 10**12  # pico-credits per credit (rates)
WINDOW = timedelta(hours=1)  # billing windows, aligned to the hour (UTC)
MAX_QUANTITY = 10**12 * MICROS

PENDING, COMMITTED, RELEASED, EXPIRED = "pending", "committed", "released", "expired"
ACTIVE, GRACE, SUSPENDED = "active", "grace", "suspended"
PUSH, COLLECTED = "push", "prometheus"


def half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator, rounded once, half away from zero (the README's charge rounding)."""
    quotient, remainder = divmod(abs(numerator), denominator)
    if 2 * remainder >= denominator:
        quotient += 1
    return quotient if numerator >= 0 else -quotient


def text(micros: int | None) -> str | None:
    """Micro-credits or micro-units as the API writes them: the shortest exact decimal ("2.5", "-3")."""
    if micros is None:
        return None
    whole, fraction = divmod(abs(micros), MICROS)
    written = f"{whole}.{fraction:06d}".rstrip("0").rstrip(".")
    return "0" if written == "0" else ("-" if micros < 0 else "") + written


def window_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def month_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class Rules:
    """The settings the promises depend on (the test reads them from the service's settings)."""

    min_runtime_hours: int
    grace: timedelta
    idempotency_ttl: timedelta
    lateness: timedelta
    lease: timedelta
    topups_per_hour: int
    future_tolerance: timedelta = timedelta(minutes=5)
    # Billing looks for late usage written since the previous window's run started, less this margin.
    late_usage_margin: timedelta = timedelta(minutes=10)


@dataclass(frozen=True)
class Outcome:
    status: int
    error: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Hold:
    """A reservation."""

    slug: str
    resource_type: str
    quantity: int  # micro-units
    amount: int  # micro-credits
    expires_at: datetime
    key: str
    body: dict  # the creating request, for replays of its Idempotency-Key
    id: int = 0
    answer: dict | None = None  # the first answer, which a replay repeats
    status: str = PENDING  # as stored
    committed_amount: int | None = None

    def seen_status(self, now: datetime) -> str:
        return EXPIRED if self.status == PENDING and self.expires_at <= now else self.status

    def live(self, now: datetime) -> bool:
        return self.status == PENDING and self.expires_at > now


@dataclass
class Project:
    slug: str
    balance: int = 0
    status: str = ACTIVE
    grace_until: datetime | None = None
    budget: int | None = None  # hard limit, micro-credits per calendar month
    quota_limits: dict[str, int | None] = field(default_factory=dict)  # one entry per quota row
    quota_used: dict[str, int] = field(default_factory=dict)
    transfers: Counter = field(default_factory=Counter)  # (kind, signed micro-credits) → count
    spend: list[tuple[datetime, int]] = field(default_factory=list)  # what counts against a budget


@dataclass
class KeyRecord:
    """An Idempotency-Key of a credit, debit or top-up: the request it was first used with, and its answer."""

    fingerprint: tuple
    created_at: datetime
    answer: tuple[int, dict]


@dataclass
class UsageRecord:
    quantity: int  # micro-units of the billing unit
    updated_at: datetime


@dataclass(frozen=True)
class Charge:
    kind: str  # regular, late_adjustment, reversal
    quantity: int
    amount: int


@dataclass
class Run:
    started_at: datetime
    charged: set[str] = field(default_factory=set)  # projects this run's charges belong to


@dataclass
class TopUp:
    slug: str
    amount: int
    created_at: datetime
    paid: bool = False
    funded: bool = False


class Books:
    """The model. Each operation returns what the service must answer and changes the books as it must."""

    def __init__(self, rules: Rules, prices: dict[str, list[tuple[datetime, int]]]):
        self.rules = rules
        self.projects: dict[str, Project] = {}
        self.holds: dict[int, Hold] = {}
        self.hold_keys: dict[str, Hold] = {}
        self.keys: dict[str, KeyRecord] = {}
        self.usage: dict[tuple[str, str, datetime, str], UsageRecord] = {}
        self.events: set[tuple[str, str]] = set()
        self.charges: dict[tuple[str, str, datetime], list[Charge]] = {}
        # Per resource type, the price versions: (effective from, pico-credits per billing unit), oldest first.
        self.prices = {code: list(versions) for code, versions in prices.items()}
        self.runs: dict[datetime, Run] = {}
        self.topups: dict[str, TopUp] = {}

    # --- figures --------------------------------------------------------------------------------
    def reserved(self, slug: str, now: datetime | None = None) -> int:
        """Micro-credits held: as stored (now=None), or as callers see it at `now`."""
        return sum(h.amount for h in self._pending(slug, now))

    def available(self, slug: str, now: datetime | None = None) -> int:
        return self.projects[slug].balance - self.reserved(slug, now)

    def quota_reserved(self, slug: str, code: str, now: datetime | None = None) -> int:
        return sum(h.quantity for h in self._pending(slug, now) if h.resource_type == code)

    def _pending(self, slug: str, now: datetime | None) -> list[Hold]:
        return [h for h in self.holds.values() if h.slug == slug and h.status == PENDING
                and (now is None or h.expires_at > now)]

    def budget_spent(self, slug: str, now: datetime) -> int:
        """This month's commits and usage charges net of credit-backs (never below zero), plus live holds."""
        start = month_of(now)
        charged = sum(amount for at, amount in self.projects[slug].spend if at >= start)
        return max(charged, 0) + self.reserved(slug, now)

    # --- the lifecycle --------------------------------------------------------------------------
    def _reactivate_if_funded(self, slug: str, now: datetime) -> None:
        project = self.projects[slug]
        if project.status in (GRACE, SUSPENDED) and self.available(slug, now) > 0:
            project.status, project.grace_until = ACTIVE, None

    def _grace_if_unfunded(self, slug: str, now: datetime) -> None:
        project = self.projects[slug]
        if project.status == ACTIVE and self.available(slug, now) <= 0:
            project.status, project.grace_until = GRACE, now + self.rules.grace

    def _after_change(self, slug: str, now: datetime, *, took_out: bool = False) -> None:
        """Any change of the wallet but a usage charge: one that leaves available > 0 reactivates the
        project at once (funding: a credit, a top-up, a credit-back, a hold given back); one taking
        credits out (a debit) that leaves available <= 0 puts an active project into grace."""
        if self.available(slug, now) > 0:
            self._reactivate_if_funded(slug, now)
        elif took_out:
            self._grace_if_unfunded(slug, now)

    def _given_back(self, slug: str, amount: int, now: datetime) -> None:
        """A hold ended and gave `amount` back (its unused part): funding, if there is any."""
        if amount > 0:
            self._after_change(slug, now)

    def _move(self, slug: str, kind: str, signed: int, now: datetime, *, spend: int = 0) -> None:
        project = self.projects[slug]
        project.balance += signed
        project.transfers[(kind, signed)] += 1
        if spend:
            project.spend.append((now, spend))

    # --- projects and wallets -------------------------------------------------------------------
    def project_create(self, slug: str) -> None:
        self.projects[slug] = Project(slug)

    def key_claim(self, key: str, fingerprint: tuple, now: datetime) -> KeyRecord | Outcome | None:
        """A credit, debit or top-up with an Idempotency-Key: the record to replay, a 422, or None (run it)."""
        record = self.keys.get(key)
        if record is None or record.created_at < now - self.rules.idempotency_ttl:
            return None  # unused, or expired: a new effect
        if record.fingerprint != fingerprint:
            return Outcome(422, "idempotency_key_reused")
        return record

    def key_settle(self, key: str, fingerprint: tuple, now: datetime, status: int, body: dict) -> None:
        """The answer to a request that ran: kept for replays if it succeeded; a refusal frees the key."""
        if 200 <= status < 300:
            self.keys[key] = KeyRecord(fingerprint, now, (status, body))
        else:
            self.keys.pop(key, None)

    def credit(self, slug: str, amount: int, now: datetime) -> Outcome:
        self._move(slug, "credit", amount, now)
        self._after_change(slug, now)
        return Outcome(201)

    def debit(self, slug: str, amount: int, now: datetime) -> Outcome:
        """Never below available. A debit that only overdue holds stand in the way of releases them and
        goes through; a refused one writes nothing (not even that release)."""
        if self.available(slug, now) < amount:
            return Outcome(402, "insufficient_credits", {"available": text(self.available(slug, now))})
        if self.available(slug) < amount:
            # In the debit's own transaction: the lifecycle sees the release and the debit together.
            self.expire_overdue(now, slug=slug, funding=False)
        self._move(slug, "debit", -amount, now)
        self._after_change(slug, now, took_out=True)
        return Outcome(201)

    # --- admission ------------------------------------------------------------------------------
    def quota_set(self, slug: str, code: str, limit: int | None) -> Outcome:
        project = self.projects[slug]
        project.quota_limits[code] = limit
        project.quota_used.setdefault(code, 0)
        return Outcome(200)

    def budget_set(self, slug: str, hard_limit: int | None) -> Outcome:
        self.projects[slug].budget = hard_limit
        return Outcome(200)

    def _refusal(self, slug: str, code: str, quantity: int, amount: int, now: datetime) -> Outcome | None:
        """Why a reservation is refused by the stored figures (which equal the seen ones once the
        project's overdue holds are expired), in the order admission checks."""
        project = self.projects[slug]
        if self.available(slug) < amount:
            return Outcome(402, "insufficient_credits", {"available": text(self.available(slug))})
        limit = project.quota_limits.get(code)
        held = project.quota_used.get(code, 0) + self.quota_reserved(slug, code) + quantity
        if (limit is not None and held > limit) or held > MAX_QUANTITY:
            return Outcome(409, "quota_exceeded")
        if project.budget is not None and self.budget_spent(slug, now) + amount > project.budget:
            return Outcome(402, "budget_exceeded")
        return None

    def reserve(self, *, slug: str, code: str, quantity: int, amount: int, ttl: int, key: str, body: dict,
                now: datetime) -> tuple[Outcome, Hold | None]:
        """(outcome, the new or replayed hold). A new hold gets its id from the service (hold_created)."""
        earlier = self.hold_keys.get(key)
        if earlier is not None:
            if earlier.body != body:
                return Outcome(422, "idempotency_key_reused"), None
            return Outcome(201, extra={"replayed": True}), earlier
        if self.projects[slug].status != ACTIVE:
            return Outcome(403, "project_suspended"), None
        refusal = self._refusal(slug, code, quantity, amount, now)
        if refusal is not None and self.expire_overdue(now, slug=slug):
            refusal = self._refusal(slug, code, quantity, amount, now)
        if refusal is not None:
            return refusal, None
        return Outcome(201), Hold(slug, code, quantity, amount, now + timedelta(seconds=ttl), key, body)

    def hold_created(self, hold: Hold, hold_id: int, answer: dict) -> None:
        hold.id, hold.answer = hold_id, answer
        self.holds[hold_id] = hold
        self.hold_keys[hold.key] = hold
        project = self.projects[hold.slug]
        project.quota_limits.setdefault(hold.resource_type, None)  # the first reservation of a type makes its row
        project.quota_used.setdefault(hold.resource_type, 0)

    def commit(self, hold_id: int, amount: int | None, now: datetime) -> Outcome:
        hold = self.holds[hold_id]
        if hold.live(now):
            if amount is not None and amount > hold.amount:
                return Outcome(400, "validation_error")
            take = hold.amount if amount is None else amount
            hold.status, hold.committed_amount = COMMITTED, take
            if take:
                self._move(hold.slug, "reservation", -take, now, spend=take)
            self.projects[hold.slug].quota_used[hold.resource_type] += hold.quantity
            self._given_back(hold.slug, hold.amount - take, now)
            return Outcome(200)
        if hold.status == COMMITTED:
            if amount is not None and amount != hold.committed_amount:
                return Outcome(409, "reservation_committed")
            return Outcome(200)
        return self._ended(hold, now)

    def release(self, hold_id: int, now: datetime) -> Outcome:
        hold = self.holds[hold_id]
        if hold.live(now):
            hold.status = RELEASED
            self._given_back(hold.slug, hold.amount, now)
            return Outcome(200)
        if hold.status == RELEASED:
            return Outcome(200)
        if hold.status == COMMITTED:
            return Outcome(409, "reservation_committed")
        return self._ended(hold, now)

    def _ended(self, hold: Hold, now: datetime) -> Outcome:
        if hold.status == RELEASED:
            return Outcome(409, "reservation_released")
        if hold.status == PENDING:  # overdue: expired now rather than by the beat
            hold.status = EXPIRED
            self._given_back(hold.slug, hold.amount, now)
        return Outcome(409, "reservation_expired")

    def expire_overdue(self, now: datetime, slug: str | None = None, *, funding: bool = True) -> int:
        """The expiry beat (every project), or the release of one project's overdue holds. funding=False:
        inside another operation, whose own lifecycle step then sees the holds given back."""
        overdue = [h for h in self.holds.values() if h.status == PENDING and h.expires_at <= now
                   and (slug is None or h.slug == slug)]
        for hold in overdue:
            hold.status = EXPIRED
            if funding:
                self._given_back(hold.slug, hold.amount, now)
        return len(overdue)

    # --- usage and billing ----------------------------------------------------------------------
    def push(self, *, slug: str, code: str, event_id: str, quantity: int, at: datetime, now: datetime) -> str:
        """One pushed event: accepted, duplicate, or the reason it is rejected."""
        if at > now + self.rules.future_tolerance:
            return "timestamp_in_future"
        if at < now - self.rules.lateness:
            return "timestamp_too_old"
        if (slug, event_id) in self.events:
            return "duplicate"
        self.events.add((slug, event_id))
        record = self.usage.setdefault((slug, code, window_of(at), PUSH), UsageRecord(0, now))
        record.quantity += quantity
        record.updated_at = now
        return "accepted"

    def collect(self, *, slug: str, code: str, window: datetime, quantity: int, now: datetime) -> None:
        """A (re-)collected window: its value replaces the last one."""
        record = self.usage.get((slug, code, window, COLLECTED))
        if record is None:
            self.usage[(slug, code, window, COLLECTED)] = UsageRecord(quantity, now)
        elif record.quantity != quantity:
            record.quantity, record.updated_at = quantity, now

    def price_change(self, code: str, unit_price: int, effective_from: datetime) -> Outcome:
        """A new version, never rewriting history: it must start after the latest version started."""
        if effective_from <= self.prices[code][-1][0]:
            return Outcome(409, "price_history_protected")
        self.prices[code].append((effective_from, unit_price))
        return Outcome(201)

    def rate(self, code: str, window: datetime) -> int:
        """Pico-credits per billing unit for the window: the versions in force, weighted by time, rounded once."""
        end = window + WINDOW
        versions = self.prices[code]
        parts = []
        for index, (start, price) in enumerate(versions):
            stop = versions[index + 1][0] if index + 1 < len(versions) else end
            overlap = (min(stop, end) - max(start, window)) // timedelta(microseconds=1)
            if overlap > 0:
                parts.append((price, overlap))
        return half_up(sum(price * weight for price, weight in parts), sum(weight for _, weight in parts))

    def bill(self, window: datetime, now: datetime) -> None:
        """A billing run of a closed window: that window, and earlier ones whose usage changed since the
        previous window's run started, each charged so that its charges sum to the cost of its usage."""
        floor = window - self.rules.lateness - WINDOW
        earlier = [w for w in self.runs if w < window]
        since = max(self.runs[max(earlier)].started_at - self.rules.late_usage_margin, floor) if earlier else floor
        run = self.runs.setdefault(window, Run(now))
        run.started_at = now
        totals: dict[tuple[str, str, datetime], int] = {}
        changed = {(s, c, w) for (s, c, w, _), r in self.usage.items() if floor <= w < window and r.updated_at >= since}
        for (slug, code, start, _), record in self.usage.items():
            if start == window or (slug, code, start) in changed:
                totals[(slug, code, start)] = totals.get((slug, code, start), 0) + record.quantity
        charged_out: set[str] = set()
        given_back: set[str] = set()
        for group, total in sorted(totals.items()):
            slug, code, start = group
            before = self.charges.get(group, [])
            growth = total - sum(c.quantity for c in before)
            if growth == 0:
                continue
            amount = half_up(total * self.rate(code, start), PICOS) - sum(c.amount for c in before)
            kind = "regular" if not before else ("late_adjustment" if growth > 0 else "reversal")
            self.charges.setdefault(group, []).append(Charge(kind, growth, amount))
            run.charged.add(slug)
            if amount > 0:
                self._move(slug, "usage", -amount, now, spend=amount)
            elif amount < 0:
                self._move(slug, "reversal", -amount, now, spend=amount)
            (given_back if amount < 0 else charged_out).add(slug)
        for slug in sorted(charged_out):
            self._grace_if_unfunded(slug, now)
        for slug in sorted(given_back):  # a credit-back is funding
            self._reactivate_if_funded(slug, now)

    def sweep(self, now: datetime) -> None:
        """The lifecycle beat: grace over → suspended (or active if funded), funded → active, and
        projects charged by a recent run that are unfunded → grace."""
        for slug, project in sorted(self.projects.items()):
            if project.status == GRACE and project.grace_until <= now:
                if self.available(slug, now) > 0:
                    project.status, project.grace_until = ACTIVE, None
                else:
                    project.status, project.grace_until = SUSPENDED, None
        for slug, project in sorted(self.projects.items()):
            # The sweep finds funded projects by the stored figures (an overdue hold counts until it expires).
            if project.status in (GRACE, SUSPENDED) and self.available(slug) > 0:
                self._reactivate_if_funded(slug, now)
        recent = {slug for run in self.runs.values() if run.started_at >= now - 2 * self.rules.lease
                  for slug in run.charged}
        for slug in sorted(recent):
            self._grace_if_unfunded(slug, now)

    # --- card top-ups ---------------------------------------------------------------------------
    def topup_start(self, slug: str, now: datetime) -> Outcome:
        """A new top-up; refused while the project has as many open (unpaid) ones made in the last hour
        as it may."""
        open_ = [t for t in self.topups.values() if t.slug == slug and not t.funded and t.created_at >= now - WINDOW]
        if len(open_) >= self.rules.topups_per_hour:
            return Outcome(429, "rate_limited")
        return Outcome(201)

    def topup_created(self, session_id: str, slug: str, amount: int, now: datetime) -> None:
        self.topups.setdefault(session_id, TopUp(slug, amount, now))

    def topup_paid(self, session_id: str, now: datetime) -> None:
        """Stripe says the session was paid (any delivery, any number of times): funded exactly once."""
        topup = self.topups[session_id]
        topup.paid = True
        if not topup.funded:
            topup.funded = True
            self._move(topup.slug, "top_up", topup.amount, now)
            self._after_change(topup.slug, now)
