"""Disputes (chargebacks) of automatic top-ups: the charge is flagged for staff and auto top-up turned off.

As for a Checkout top-up (services.checkout_session_flag_dispute), no credits are taken back: staff act
(admin filter "disputed"). A cardholder who disputes an off-session charge is not charged off-session
again, so auto top-up is turned off with the flag, once. A dispute that arrives before the charge is
funded is stored as failed and applied once it is (events.py), as refunds are.
"""

import logging
from typing import Any

from django.db import transaction

from .autotopup import autotopup_turn_off_after_charge_reversed
from .autotopup_refunds import locked_funded_charge
from .models import AutoTopUpCharge
from .services import top_up_flag_dispute

log = logging.getLogger(__name__)


def autotopup_charge_flag_dispute(*, dispute: dict[str, Any]) -> AutoTopUpCharge:
    """charge.dispute.created of an automatic top-up: flag the charge, turn auto top-up off. Safe to repeat."""
    with transaction.atomic():
        charge = locked_funded_charge(dispute, what="dispute")
        if top_up_flag_dispute(top_up=charge):
            # Only with the first flag: an owner who turned it back on is not overruled by a replay.
            autotopup_turn_off_after_charge_reversed(project_id=charge.project_id, charge_id=charge.id, how="disputed")
    log.warning("dispute %s opened on automatic top-up charge %s of project %s",
                dispute.get("id"), charge.id, charge.project_id)
    return charge
