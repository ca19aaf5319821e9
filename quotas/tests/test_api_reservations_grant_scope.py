"""Credit grants scoped to resource types: a reservation counts, and its commit spends, only the credits
that apply to its type; the admission check counts what POST /reservations would."""

from datetime import timedelta

from django.utils import timezone

from creditservice.lib.money import credits_to_micros
from creditservice.testing.invariants import assert_books_balance
from quotas.tests.helpers import CHECK, commit, reserve
from wallets import services
from wallets.models import Grant, GrantDraw, Transfer
from wallets.tests.factories import ProjectFactory

_keys = iter(range(10**9))


def _promotion(project, credits: str, **terms) -> Grant:
    return services.grant_create(project=project, category="promotional", amount=credits_to_micros(credits),
                                 reason="test", actor="system", idempotency_key=f"scope-{next(_keys)}", **terms)


def _drawn(reservation_id: int) -> list[tuple[int, int]]:
    charge = Transfer.objects.get(kind=Transfer.Kind.RESERVATION, reference=f"reservation:{reservation_id}")
    return list(GrantDraw.objects.filter(transfer=charge).order_by("id").values_list("grant_id", "amount"))


def test_a_vm_commit_does_not_spend_credits_scoped_to_gpu(platform, db):
    project = ProjectFactory(slug="acme", balance="20")  # granted, priority 20, every type
    gpu = _promotion(project, "10", resource_types=["gpu"])  # priority 10: first in the plain order
    held = reserve(platform, resource_type="vm", amount="5")
    assert held.status_code == 201, held.json()
    assert commit(platform, held.json()["id"]).status_code == 200
    granted = Grant.objects.get(category="granted")
    assert _drawn(held.json()["id"]) == [(granted.id, credits_to_micros("5"))]
    gpu.refresh_from_db()
    assert gpu.remaining == credits_to_micros("10")
    assert_books_balance()


def test_a_vm_reservation_beyond_the_unscoped_credits_is_refused(platform, db):
    project = ProjectFactory(slug="acme", balance="20")
    _promotion(project, "30", resource_types=["gpu", "vcpu"])
    refused = reserve(platform, resource_type="vm", amount="25")
    assert refused.status_code == 402, refused.json()
    # What the decision counted: the 20 that apply to vm, not the 30 for gpu and vcpu.
    assert (refused.json()["error"], refused.json()["available"], refused.json()["requested"]) == (
        "insufficient_credits", "20", "25")
    assert reserve(platform, resource_type="vm", amount="20").status_code == 201
    # A gpu reservation may count the scoped credits (and the 20, now held by the vm reservation, not).
    assert reserve(platform, resource_type="gpu", amount="30").status_code == 201
    assert reserve(platform, resource_type="gpu", amount="0.01").status_code == 402
    assert_books_balance()


def test_a_gpu_commit_draws_the_gpu_grant_first(platform, db):
    project = ProjectFactory(slug="acme", balance="20")
    gpu = _promotion(project, "10", resource_types=["gpu"])
    other = _promotion(project, "10", priority=0, resource_types=["vm"])  # first in priority, not for gpu
    held = reserve(platform, resource_type="gpu", amount="15")
    assert held.status_code == 201, held.json()
    assert commit(platform, held.json()["id"]).status_code == 200
    granted = Grant.objects.get(category="granted")
    assert _drawn(held.json()["id"]) == [(gpu.id, credits_to_micros("10")), (granted.id, credits_to_micros("5"))]
    other.refresh_from_db()
    assert other.remaining == credits_to_micros("10")
    assert_books_balance()


def test_a_commit_beyond_the_credits_of_its_type_takes_from_other_types(platform, db):
    """A pending reservation stays committable: holds are counted per wallet, so an earlier commit of
    another type may have spent the credits this one was admitted on; the rest then comes from grants
    scoped to other types, and the grants still hold the balance between them."""
    project = ProjectFactory(slug="acme")
    shared = _promotion(project, "10", priority=5)  # every type, drawn first
    gpu = _promotion(project, "10", resource_types=["gpu"])
    vm_hold = reserve(platform, resource_type="vm", amount="10")
    gpu_hold = reserve(platform, resource_type="gpu", amount="10")
    assert (vm_hold.status_code, gpu_hold.status_code) == (201, 201)
    assert commit(platform, gpu_hold.json()["id"]).status_code == 200
    assert _drawn(gpu_hold.json()["id"]) == [(shared.id, credits_to_micros("10"))]
    assert commit(platform, vm_hold.json()["id"]).status_code == 200
    assert _drawn(vm_hold.json()["id"]) == [(gpu.id, credits_to_micros("10"))]
    assert sum(Grant.objects.values_list("remaining", flat=True)) == 0
    assert_books_balance()


def test_the_admission_check_counts_only_credits_that_last_as_long_as_the_reservation(platform, db):
    project = ProjectFactory(slug="acme", balance="5")
    # Expires before a reservation of the default TTL (300 s) would.
    _promotion(project, "50", expires_at=timezone.now() + timedelta(seconds=60))
    body = {"project": "acme", "resource_type": "vm", "quantity": "1", "amount": "10"}
    check = platform.post(CHECK, body, format="json").json()
    assert (check["allowed"], check["reason"], check["available"]) == (False, "insufficient_credits", "5")
    refused = reserve(platform, resource_type="vm", amount="10")
    assert (refused.status_code, refused.json()["available"]) == (402, "5")
    assert platform.post(CHECK, {**body, "amount": "5"}, format="json").json()["allowed"] is True
    assert reserve(platform, resource_type="vm", amount="5").status_code == 201


def test_the_admission_check_counts_only_credits_of_its_type(platform, db):
    project = ProjectFactory(slug="acme", balance="5")
    _promotion(project, "50", resource_types=["gpu"])
    body = {"project": "acme", "resource_type": "vm", "quantity": "1", "amount": "10"}
    vm = platform.post(CHECK, body, format="json").json()
    assert (vm["allowed"], vm["available"]) == (False, "5")
    gpu = platform.post(CHECK, {**body, "resource_type": "gpu"}, format="json").json()
    assert (gpu["allowed"], gpu["available"]) == (True, "55")
