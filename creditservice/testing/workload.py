"""A mixed API workload (credits, debits, reservations, commits, releases) for concurrency checks.

The suite drives it through Django's test client in threads (quotas/tests/test_concurrency_mixed.py);
scripts/soak.py drives it over HTTP against a running server for a minute. It imports nothing of
Django, so the script can use it without settings.

A call is `call(method, path, body, idempotency_key) -> (status, json body or None)`.
"""

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

Call = Callable[[str, str, dict | None, str | None], tuple[int, dict | None]]

# Answers a correct service may give to this workload: success, refusals for money, quota or state, and
# a reservation refused because debits took the project into grace.
EXPECTED = {200, 201, 402, 409}
EXPECTED_REFUSALS = {(403, "project_suspended")}


@dataclass
class Tally:
    statuses: Counter = field(default_factory=Counter)
    # (operation, status, body) of every answer outside EXPECTED, 5xx first of all.
    unexpected: list[tuple[str, int, dict | None]] = field(default_factory=list)

    def add(self, operation: str, status: int, body: dict | None) -> None:
        self.statuses[status] += 1
        code = body.get("error") if isinstance(body, dict) else None
        if status not in EXPECTED and (status, code) not in EXPECTED_REFUSALS:
            self.unexpected.append((operation, status, body))

    def merge(self, other: "Tally") -> None:
        self.statuses.update(other.statuses)
        self.unexpected.extend(other.unexpected)

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500)

    @property
    def calls(self) -> int:
        return sum(self.statuses.values())


class MixedClient:
    """One client's random walk over a few projects: each step is one API call.

    Every key is unique to (client, step), so no call repeats another's effect; the reservations a
    client made are the ones it later commits or releases (each at most once).
    """

    def __init__(self, call: Call, *, slugs: list[str], name: str, seed: int, resource_type: str = "vm"):
        self.call, self.slugs, self.name, self.resource_type = call, slugs, name, resource_type
        self.rng = random.Random(seed)
        self.steps = 0
        self.open: list[int] = []  # reservations this client holds
        self.tally = Tally()

    def step(self) -> None:
        self.steps += 1
        key = f"{self.name}-{self.steps}"
        slug = self.rng.choice(self.slugs)
        roll = self.rng.random()
        if self.open and roll < 0.3:
            reservation_id = self.open.pop(self.rng.randrange(len(self.open)))
            if self.rng.random() < 0.6:
                body = {} if self.rng.random() < 0.5 else {"amount": "0.5"}
                self._do("commit", "POST", f"/api/v1/reservations/{reservation_id}/commit", body, None)
            else:
                self._do("release", "POST", f"/api/v1/reservations/{reservation_id}/release", {}, None)
        elif roll < 0.55:
            body = {"project": slug, "resource_type": self.resource_type, "quantity": "1", "amount": "1",
                    "ttl_seconds": 600}
            status, answer = self._do("reserve", "POST", "/api/v1/reservations", body, key)
            if status == 201 and answer:
                self.open.append(answer["id"])
        elif roll < 0.8:
            self._do("credit", "POST", f"/api/v1/projects/{slug}/wallet/credit",
                     {"amount": "2", "reason": "soak credit"}, key)
        else:
            self._do("debit", "POST", f"/api/v1/projects/{slug}/wallet/debit",
                     {"amount": "1.5", "reason": "soak debit"}, key)

    def finish(self) -> None:
        """Release what is still held, so the run ends with no hold left behind."""
        while self.open:
            reservation_id = self.open.pop()
            self._do("release", "POST", f"/api/v1/reservations/{reservation_id}/release", {}, None)

    def _do(self, operation: str, method: str, path: str, body: dict | None, key: str | None):
        status, answer = self.call(method, path, body, key)
        self.tally.add(operation, status, answer)
        return status, answer
