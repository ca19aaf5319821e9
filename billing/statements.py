"""Monthly statements: a project's wallet over one calendar month (UTC), read from its transfers.

opening balance + the sum of the lines == closing balance, exactly, and both balances are the sums of
the wallet's transfers before the month's start and end (the ledger is the source of truth, never
the cached balance). Every transfer of the month falls in exactly one line: a kind this module does
not know is an "other" line, so the statement adds up whatever the ledger gains later.

Here, in billing, because the lines need billing's charges (usage and credit-backs by resource type)
and gateway's charges (per-call usage by resource type): billing is above quotas and metering, and
gateway (above quotas) never imports billing, so the arrows still point one way.

Set-based: one aggregate over the month's transfers, grouped by what classifies them, with the
charge, reservation and gateway charge of each joined in SQL (a month can hold ~100,000 transfers),
and one aggregate for the two balances. Both in one read snapshot, so a transfer written meanwhile
cannot make the statement disagree with itself.
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import connection
from django.utils import timezone

from creditservice.lib.errors import ValidationFailed
from gateway.models import GatewayCharge, MeteredRoute
from quotas.models import Reservation, ResourceType
from wallets.models import Account, Project, Transfer
from wallets.selectors import read_snapshot

from .models import Charge

MONTH_FORMAT = re.compile(r"([0-9]{4})-([0-9]{2})")  # ASCII digits only: \d takes any script's
# No statement is older than this: a bound on input, whatever the project's history.
EARLIEST_MONTH = (2000, 1)

# Line kinds, in the order a statement lists them. Amounts are signed: into the wallet positive.
TOP_UP = "top_up"
GRANT = "grant"
STAFF_CREDIT = "staff_credit"
STAFF_DEBIT = "staff_debit"
USAGE = "usage"
CREDIT_BACK = "credit_back"
RESERVATION_COMMIT = "reservation_commit"
GATEWAY_CHARGE = "gateway_charge"
EXPIRY = "expiry"
REFUND = "refund"
REVERSAL = "reversal"
OTHER = "other"
LINE_KINDS = (TOP_UP, GRANT, STAFF_CREDIT, STAFF_DEBIT, USAGE, CREDIT_BACK, RESERVATION_COMMIT, GATEWAY_CHARGE,
              EXPIRY, REFUND, REVERSAL, OTHER)

_DESCRIPTIONS = {
    TOP_UP: "Card top-ups (Stripe Checkout)",
    GRANT: "Credit grants and promotions",
    STAFF_CREDIT: "Credits added by staff or the platform",
    STAFF_DEBIT: "Credits taken by staff or the platform",
    USAGE: "Usage charges",
    CREDIT_BACK: "Usage credited back (usage came back lower after it was billed)",
    RESERVATION_COMMIT: "Reservations committed",
    GATEWAY_CHARGE: "Gateway calls charged",
    EXPIRY: "Credits expired or voided (grants past their expiry, or voided by staff)",
    REFUND: "Card payments refunded",
    REVERSAL: "Corrections of earlier transfers",
    OTHER: "Other movements",
}

# Transfer kinds as the grants feature may name them (not all exist yet): a grant in, an expiry out.
_GRANT_KINDS = {Transfer.Kind.PROMOTION.value, "grant", "grant_transfer"}
_EXPIRY_KINDS = {"expiry", "grant_expiry", "expired", "expiration", "grant_void"}
# The system account a grant's expiry goes to, and the ones grants come from.
_EXPIRY_ACCOUNTS = {"expired", "voided"}
_GRANT_ACCOUNTS = {Account.System.PROMOTIONS.value, "grants"}


@dataclass(frozen=True)
class Month:
    year: int
    month: int

    @property
    def label(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """The next month's start (exclusive)."""
        return datetime(self.year + self.month // 12, self.month % 12 + 1, 1, tzinfo=UTC)

    def key(self) -> tuple[int, int]:
        return (self.year, self.month)


def month_of(moment: datetime) -> Month:
    moment = moment.astimezone(UTC)
    return Month(moment.year, moment.month)


def statement_month(value: str, *, project: Project, now: datetime | None = None) -> Month:
    """The month `value` (YYYY-MM) names, if this project has a statement for it; 400 otherwise.

    Bounded: not before the project's first month (its creation or first transfer, whichever is
    earlier: an imported ledger may hold older transfers), not before 2000-01, not after this month.
    """
    found = MONTH_FORMAT.fullmatch(value or "")
    if not found or not 1 <= int(found.group(2)) <= 12:
        raise ValidationFailed({"month": ["a month is YYYY-MM, e.g. 2026-11"]})
    month = Month(int(found.group(1)), int(found.group(2)))
    current = month_of(now or timezone.now())
    if month.key() > current.key():
        raise ValidationFailed({"month": [f"{month.label} has not begun: the latest statement is {current.label} (to date)"]})
    first = project_first_month(project)
    if month.key() < max(first.key(), EARLIEST_MONTH):
        raise ValidationFailed({"month": [f"project {project.slug!r} has no statement before {first.label}"]})
    return month


def project_first_month(project: Project) -> Month:
    # Served by the transfer_project_recent index (project, -id).
    first_transfer = Transfer.objects.filter(project_id=project.id).order_by("id").values_list("created_at", flat=True).first()
    earliest = min(filter(None, [project.created_at, first_transfer]))
    return month_of(earliest)


@dataclass(frozen=True)
class StatementLine:
    kind: str
    resource_type: str | None
    description: str
    amount: int  # micro-credits, signed: positive into the wallet
    count: int  # transfers


@dataclass(frozen=True)
class Statement:
    project: Project
    month: Month
    opening_balance: int  # micro-credits
    closing_balance: int  # micro-credits
    lines: list[StatementLine]
    to_date: bool  # the current month: the statement so far


def _sql(wallet_id: int) -> tuple[str, str, list]:
    """(lines query, balances query, shared leading params) for the wallet's transfers."""
    transfer = Transfer._meta.db_table
    account = Account._meta.db_table
    charge = Charge._meta.db_table
    types = ResourceType._meta.db_table
    reservation = Reservation._meta.db_table
    gateway_charge = GatewayCharge._meta.db_table
    route = MeteredRoute._meta.db_table
    signed = (f"CASE WHEN t.credit_account_id = {int(wallet_id)} THEN t.amount "
              f"WHEN t.debit_account_id = {int(wallet_id)} THEN -t.amount ELSE 0 END")
    # The id a reservation commit or gateway charge names in its reference ("reservation:12",
    # "gateway:34"); the CASE keeps the cast off every other reference.
    reservation_id = ("CASE WHEN t.kind = %s AND t.reference LIKE 'reservation:%%' "
                      "THEN CAST(SUBSTR(t.reference, 13) AS BIGINT) END")
    gateway_id = "CASE WHEN t.kind = %s AND t.reference LIKE 'gateway:%%' THEN CAST(SUBSTR(t.reference, 9) AS BIGINT) END"
    lines = (
        "SELECT kind, counter, charge_type, reserved_type, gateway, gateway_type, SUM(signed), COUNT(*) FROM ("
        f"SELECT t.kind AS kind, CASE WHEN t.credit_account_id = {int(wallet_id)} THEN d.code ELSE c.code END AS counter, "
        "ct.code AS charge_type, "
        f"(SELECT rt.code FROM {reservation} r JOIN {types} rt ON rt.id = r.resource_type_id "
        f"WHERE r.id = {reservation_id}) AS reserved_type, "
        "CASE WHEN t.reference LIKE 'gateway:%%' THEN 1 ELSE 0 END AS gateway, "
        f"(SELECT rt.code FROM {gateway_charge} g JOIN {route} mr ON mr.id = g.route_id "
        f"JOIN {types} rt ON rt.id = mr.resource_type_id WHERE g.id = {gateway_id}) AS gateway_type, "
        f"{signed} AS signed "
        f"FROM {transfer} t "
        f"JOIN {account} d ON d.id = t.debit_account_id JOIN {account} c ON c.id = t.credit_account_id "
        # A charge shares its transfer's idempotency key (unique on both); the project narrows the join.
        f"LEFT JOIN {charge} ch ON ch.idempotency_key = t.idempotency_key AND ch.project_id = t.project_id "
        "AND t.kind IN (%s, %s) "
        f"LEFT JOIN {types} ct ON ct.id = ch.resource_type_id "
        "WHERE t.project_id = %s AND t.created_at >= %s AND t.created_at < %s"
        ") x GROUP BY kind, counter, charge_type, reserved_type, gateway, gateway_type"
    )
    balances = (f"SELECT COALESCE(SUM(CASE WHEN t.created_at < %s THEN {signed} ELSE 0 END), 0), "
                f"COALESCE(SUM({signed}), 0) FROM {transfer} t WHERE t.project_id = %s AND t.created_at < %s")
    params = [Transfer.Kind.RESERVATION.value, Transfer.Kind.USAGE.value,
              Transfer.Kind.USAGE.value, Transfer.Kind.REVERSAL.value]
    return lines, balances, params


def _classify(kind: str, counter: str | None, charge_type: str | None, reserved_type: str | None, gateway: bool,
              gateway_type: str | None) -> tuple[str, str | None]:
    """(line kind, resource type) of a group of transfers."""
    if kind == Transfer.Kind.TOP_UP:
        return TOP_UP, None
    if kind == Transfer.Kind.REFUND:
        return REFUND, None
    if kind in _EXPIRY_KINDS or counter in _EXPIRY_ACCOUNTS:
        return EXPIRY, None
    if kind in _GRANT_KINDS or (kind == Transfer.Kind.CREDIT and counter in _GRANT_ACCOUNTS):
        return GRANT, None
    if kind == Transfer.Kind.CREDIT:
        return STAFF_CREDIT, None
    if kind == Transfer.Kind.DEBIT:
        return STAFF_DEBIT, None
    if kind == Transfer.Kind.RESERVATION:
        return RESERVATION_COMMIT, reserved_type
    if kind == Transfer.Kind.USAGE:
        if charge_type is not None:
            return USAGE, charge_type
        if gateway:
            return GATEWAY_CHARGE, gateway_type
        return USAGE, None
    if kind == Transfer.Kind.REVERSAL:
        return (CREDIT_BACK, charge_type) if charge_type is not None else (REVERSAL, None)
    return OTHER, None


def _description(line_kind: str, resource_type: ResourceType | None, code: str | None) -> str:
    words = _DESCRIPTIONS[line_kind]
    if resource_type is not None:
        return f"{words}: {resource_type.display_name} ({resource_type.code})"
    return f"{words}: {code}" if code else words


def project_statement(*, project: Project, month: Month, now: datetime | None = None) -> Statement:
    """The project's statement for `month` (validated by statement_month); the current month to date."""
    now = now or timezone.now()
    wallet_id = Account.objects.values_list("id", flat=True).get(project_id=project.id, kind=Account.Kind.WALLET)
    lines_sql, balances_sql, kinds = _sql(wallet_id)
    start, end = month.start, month.end
    adapt = connection.ops.adapt_datetimefield_value
    with read_snapshot(), connection.cursor() as cursor:
        cursor.execute(lines_sql, [*kinds, project.id, adapt(start), adapt(end)])
        groups = cursor.fetchall()
        cursor.execute(balances_sql, [adapt(start), project.id, adapt(end)])
        opening, closing = cursor.fetchone()
    totals: dict[tuple[str, str | None], list[int]] = {}
    for kind, counter, charge_type, reserved_type, gateway, gateway_type, amount, count in groups:
        key = _classify(kind, counter, charge_type, reserved_type, bool(gateway), gateway_type)
        total = totals.setdefault(key, [0, 0])
        total[0] += int(amount)
        total[1] += int(count)
    types = ResourceType.objects.in_bulk([code for _, code in totals if code], field_name="code")
    order = {kind: index for index, kind in enumerate(LINE_KINDS)}
    lines = [StatementLine(kind=kind, resource_type=code, description=_description(kind, types.get(code), code),
                           amount=amount, count=count)
             for (kind, code), (amount, count) in sorted(totals.items(), key=lambda item: (order[item[0][0]], item[0][1] or ""))]
    opening, closing = int(opening), int(closing)
    # Both ends of the boundary: the lines are the month's transfers, so they bridge the two balances.
    if opening + sum(line.amount for line in lines) != closing:
        raise AssertionError(f"statement of {project.slug} {month.label} does not add up: {opening} + lines != {closing}")
    return Statement(project=project, month=month, opening_balance=opening, closing_balance=closing, lines=lines,
                     to_date=month.key() == month_of(now).key())
