"""Auto top-up's lock order: an event about an automatic charge locks the project's settings row before the
charge (payments.autotopup.locked_charge), as autotopup_check and autotopup_charge_fail do. In the other
order a refund and a failed payment of one project could each hold the row the other waits for. PostgreSQL
only: SQLite has no row locks (a writer holds the whole database), so it has no order to get wrong."""

import threading
import time

import pytest
from django.db import OperationalError, connection, transaction
from django.test import Client

from payments.models import AutoTopUp, AutoTopUpCharge, StripeEvent
from payments.tests.conftest import WebhookSender
from payments.tests.test_autotopup import armed, spend  # noqa: F401  (armed is a fixture)
from payments.tests.test_autotopup_disputes import disputed
from payments.tests.test_autotopup_refunds import funded_charge, refunded

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

def charged(armed, fake_stripe, project) -> AutoTopUpCharge:  # noqa: F811
    """An automatic charge sent to Stripe and not funded yet."""
    spend(project, "85", "fall")
    return AutoTopUpCharge.objects.get(project=project)


# kind: (the charge it is about, the event)
EVENTS = {
    "funding": (charged, lambda fake_stripe, charge: fake_stripe.payment_intent_event(charge.stripe_payment_intent_id)),
    "refund": (funded_charge, lambda fake_stripe, charge: refunded(fake_stripe, charge, 8500)),
    "dispute": (funded_charge, disputed),
}


def another_backend_waits_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        # Inside a transaction the statistics views keep their first reading unless cleared.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'")
        return cursor.fetchone()[0] > 0


@pytest.mark.parametrize("kind", sorted(EVENTS))
def test_an_event_waits_for_the_settings_row_before_it_locks_the_charge(armed, fake_stripe, project, kind):  # noqa: F811
    make_charge, make_event = EVENTS[kind]
    charge = make_charge(armed, fake_stripe, project)
    event = make_event(fake_stripe, charge)
    answers = []

    def deliver() -> None:
        try:
            answers.append(WebhookSender(Client()).send(event).status_code)
        finally:
            connection.close()

    delivery = threading.Thread(target=deliver)
    with transaction.atomic():
        # This test holds the settings row, as a concurrent check or failure would.
        AutoTopUp.objects.select_for_update().get(project=project)
        delivery.start()
        deadline = time.monotonic() + 30
        while not another_backend_waits_on_a_lock():
            assert time.monotonic() < deadline, ("the event never waited for the settings row", answers)
            time.sleep(0.02)
        # The event waits with the charge row still free: had it locked the charge first, NOWAIT would fail.
        try:
            AutoTopUpCharge.objects.select_for_update(nowait=True).get(id=charge.id)
        except OperationalError as exc:
            pytest.fail(f"the {kind} locked the charge before the settings row: {exc}")
    delivery.join(timeout=60)
    assert answers == [200]
    assert StripeEvent.objects.get(stripe_event_id=event["id"]).status == StripeEvent.Status.PROCESSED
