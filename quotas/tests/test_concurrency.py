"""Admission under real parallel clients, on PostgreSQL and SQLite: no hold is ever granted twice or beyond a limit."""

import random
import threading
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from creditservice.lib.money import format_amount, parse_amount
from creditservice.testing.fixtures import ServiceClient
from quotas.models import Budget, Quota, Reservation, ResourceType
from quotas.quantities import format_quantity
from quotas.tests.helpers import ledger_is_consistent, reserve, set_quota, units
from wallets.models import Account, Project
from wallets.tests.factories import ProjectFactory, platform_key

# Real threads on every backend: row locks on PostgreSQL, the write lock taken at BEGIN on SQLite.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def resource_types():
    """A transactional test's database was flushed by the one before it: ship the types again."""
    for code, unit in (("vm", "vm"), ("vcpu", "vCPU"), ("gpu", "gpu")):
        ResourceType.objects.get_or_create(code=code, defaults={"display_name": code, "unit": unit})


@pytest.fixture
def raw_key(resource_types) -> str:
    return platform_key()


def _parallel(raw_key: str, count: int, call, workers: int = 32) -> list:
    def run(i: int):
        try:
            return call(ServiceClient(raw_key), i)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run, range(count)))


def test_two_hundred_parallel_reservations_against_room_for_fifty_let_exactly_fifty_through(raw_key):
    ProjectFactory(slug="acme", balance="50")
    codes = _parallel(raw_key, 200, lambda client, i: reserve(client, amount="1", key=f"r{i}").status_code)
    assert Counter(codes) == {201: 50, 402: 150}
    wallet = Account.objects.get(project__slug="acme")
    assert (wallet.balance, wallet.reserved) == (50_000_000, 50_000_000)
    assert Reservation.objects.count() == 50
    assert ledger_is_consistent()


def test_forty_parallel_reservations_against_a_quota_of_ten_let_exactly_ten_through(raw_key):
    project = ProjectFactory(slug="acme", balance="1000")
    set_quota(project, "gpu", "10")
    codes = _parallel(raw_key, 40, lambda client, i: reserve(client, resource_type="gpu", amount="1", key=f"g{i}").status_code)
    assert Counter(codes) == {201: 10, 409: 30}
    quota = Quota.objects.get(project=project, resource_type__code="gpu")
    assert (quota.used, quota.reserved) == (units("0"), units("10"))
    assert Account.objects.get(project=project).reserved == 10_000_000
    assert ledger_is_consistent()


def test_thirty_parallel_reservations_against_a_budget_for_ten_let_exactly_ten_through(raw_key):
    project = ProjectFactory(slug="acme", balance="1000")
    Budget.objects.create(project=project, hard_limit=10_000_000)
    codes = _parallel(raw_key, 30, lambda client, i: reserve(client, amount="1", key=f"b{i}").status_code)
    assert Counter(codes) == {201: 10, 402: 20}
    assert ledger_is_consistent()


def test_parallel_retries_of_one_reservation_hold_once(raw_key):
    ProjectFactory(slug="acme", balance="100")
    responses = _parallel(raw_key, 20, lambda client, i: reserve(client, amount="3", key="same"))
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert Account.objects.get(project__slug="acme").reserved == 3_000_000


def test_parallel_commits_and_releases_of_one_reservation_end_it_once(raw_key):
    ProjectFactory(slug="acme", balance="100")
    reservation_id = reserve(ServiceClient(raw_key), amount="10").json()["id"]

    def end(client, i):
        action = "commit" if i % 2 else "release"
        return action, client.post(f"/api/v1/reservations/{reservation_id}/{action}", format="json").status_code

    results = _parallel(raw_key, 20, end)
    winners = {action for action, code in results if code == 200}
    assert len(winners) == 1
    assert all(code == 409 for action, code in results if action not in winners)
    wallet = Account.objects.get(project__slug="acme")
    assert wallet.reserved == 0
    assert wallet.balance == (90_000_000 if winners == {"commit"} else 100_000_000)
    assert ledger_is_consistent()


def test_random_interleaving_leaves_wallets_quotas_and_budgets_equal_to_the_model(raw_key):
    """Many threads reserve, commit (whole or part) and release at random, also each other's
    reservations, on three small projects. Whatever the interleaving, the database must equal what the
    answers the clients received add up to, and no limit may be passed."""
    seed = 20261122
    slugs = ["p0", "p1", "p2"]
    initial = {"p0": "40", "p1": "25", "p2": "60"}
    quota_limit = {"p0": units("6"), "p1": units("100"), "p2": units("4.5")}
    budget = {"p0": None, "p1": 20_000_000, "p2": 45_000_000}
    for slug in slugs:
        project = ProjectFactory(slug=slug, balance=initial[slug])
        set_quota(project, "vcpu", format_quantity(quota_limit[slug]))
        if budget[slug] is not None:
            Budget.objects.create(project=project, hard_limit=budget[slug])

    created: list[dict] = []  # reservations the API answered 201 for
    lock = threading.Lock()
    outcomes: dict[int, list[tuple[str, int, dict]]] = defaultdict(list)

    def worker(client: ServiceClient, i: int) -> None:
        rng = random.Random(seed + i)
        for step in range(12):
            roll = rng.random()
            with lock:
                known = list(created)
            if roll < 0.5 or not known:
                slug = rng.choice(slugs)
                response = reserve(client, project=slug, resource_type="vcpu",
                                   quantity=str(rng.choice(["0.5", "1", "1.5", "2"])),
                                   amount=str(rng.choice(["1", "2.5", "4", "7"])), key=f"w{i}-{step}")
                assert response.status_code in (201, 402, 409), response.json()
                if response.status_code == 201:
                    with lock:
                        created.append(response.json())
            else:
                target = rng.choice(known)
                if roll < 0.8:
                    held = parse_amount(target["amount"], allow_zero=True)
                    amount = rng.choice([None, format_amount(held // 2) if held // 2 else "0"])
                    body = {} if amount is None else {"amount": amount}
                    response = client.post(f"/api/v1/reservations/{target['id']}/commit", body, format="json")
                    kind = "commit"
                else:
                    response = client.post(f"/api/v1/reservations/{target['id']}/release", format="json")
                    kind = "release"
                assert response.status_code in (200, 409), response.json()
                with lock:
                    outcomes[target["id"]].append((kind, response.status_code, response.json()))

    _parallel(raw_key, 24, worker, workers=12)

    # The model: what the answers add up to.
    committed: dict[int, int] = {}
    released: set[int] = set()
    for reservation_id, events in outcomes.items():
        ok = [(kind, body) for kind, code, body in events if code == 200]
        kinds = {kind for kind, _ in ok}
        assert len(kinds) <= 1, f"reservation {reservation_id} was both committed and released"
        if kinds == {"commit"}:
            amounts = {body["committed_amount"] for _, body in ok}
            assert len(amounts) == 1, "two commits of one reservation answered different amounts"
            committed[reservation_id] = parse_amount(amounts.pop(), allow_zero=True)
        elif kinds == {"release"}:
            released.add(reservation_id)
    rows = {r.id: r for r in Reservation.objects.select_related("project")}
    assert set(rows) == {c["id"] for c in created}, "every 201 is a reservation, and nothing else is"
    for slug in slugs:
        mine = [c for c in created if c["project"] == slug]
        pending = [c for c in mine if c["id"] not in committed and c["id"] not in released]
        charged = sum(committed[c["id"]] for c in mine if c["id"] in committed)
        held = sum(parse_amount(c["amount"], allow_zero=True) for c in pending)
        wallet = Account.objects.get(project__slug=slug)
        assert wallet.balance == parse_amount(initial[slug]) - charged
        assert wallet.reserved == held
        assert wallet.balance - wallet.reserved >= 0
        quota = Quota.objects.get(project__slug=slug, resource_type__code="vcpu")
        assert quota.used == sum(units(c["quantity"]) for c in mine if c["id"] in committed)
        assert quota.reserved == sum(units(c["quantity"]) for c in pending)
        assert quota.used + quota.reserved <= quota_limit[slug]
        if budget[slug] is not None:
            assert charged + held <= budget[slug]
        for c in mine:
            expected = "committed" if c["id"] in committed else "released" if c["id"] in released else "pending"
            assert rows[c["id"]].status == expected
            if expected == "committed":
                assert rows[c["id"]].committed_amount == committed[c["id"]]
    assert Project.objects.count() == 3
    assert ledger_is_consistent()


def test_retries_of_a_reservation_racing_its_commit_neither_deadlock_nor_hold_again(raw_key):
    ProjectFactory(slug="acme", balance="100")
    first = reserve(ServiceClient(raw_key), amount="10", key="racing").json()

    def race(client, i):
        if i % 2:
            return client.post(f"/api/v1/reservations/{first['id']}/commit", format="json").status_code
        response = reserve(client, amount="10", key="racing")
        return response.status_code if response.json().get("id") == first["id"] else -1

    codes = _parallel(raw_key, 40, race, workers=20)
    assert set(codes) == {200, 201}
    wallet = Account.objects.get(project__slug="acme")
    assert (wallet.balance, wallet.reserved) == (90_000_000, 0)
    assert ledger_is_consistent()
