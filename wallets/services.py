"""Writes of the wallets app: projects, memberships, staff and platform credits and debits."""

from collections.abc import Callable

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from creditservice.lib.errors import Conflict, InsufficientCredits
from creditservice.lib.money import format_amount

from . import ledger
from .ledger.grants import GrantTerms
from .models import Account, Grant, LedgerCheck, Membership, Project, Transfer
from .selectors import LedgerReport, full_check, project_wallet_figures

# A hold past its expiry is already free for readers and admission, but still counted in the wallet's
# reserved column until the expiry task releases it. quotas, which owns holds, registers here how to
# release a project's overdue holds (-> how many it released), so a debit refused only because of them
# releases them and is tried once more, as a reservation is.
OverdueHoldsRelease = Callable[[int], int]
_overdue_hold_releases: list[OverdueHoldsRelease] = []


def register_overdue_hold_release(release: OverdueHoldsRelease) -> OverdueHoldsRelease:
    _overdue_hold_releases.append(release)
    return release


def project_create(*, slug: str, name: str, owner: AbstractBaseUser | None = None) -> Project:
    """A project and its wallet account, created together."""
    try:
        with transaction.atomic():
            project = Project.objects.create(slug=slug, name=name)
            Account.objects.create(kind=Account.Kind.WALLET, project=project)
            if owner is not None:
                Membership.objects.create(project=project, user=owner, role=Membership.Role.OWNER)
    except IntegrityError:
        raise Conflict(f"a project with slug {slug!r} already exists", code="project_exists") from None
    return project


def wallet_credit(*, project: Project, amount: int, reason: str, idempotency_key: str, actor: str,
                  system_code: str = Account.System.ADJUSTMENTS, kind: str = Transfer.Kind.CREDIT) -> Transfer:
    record, _ = ledger.transfer(
        project=project, direction="in", system_code=system_code, amount=amount, kind=kind,
        idempotency_key=idempotency_key, reason=reason, actor=actor,
    )
    return record


def wallet_debit(*, project: Project, amount: int, reason: str, idempotency_key: str, actor: str) -> Transfer:
    """A debit that never takes the available balance below zero (402 with `available` otherwise)."""
    for attempt in (1, 2):
        try:
            record, _ = ledger.transfer(
                project=project, direction="out", system_code=Account.System.ADJUSTMENTS, amount=amount,
                kind=Transfer.Kind.DEBIT, idempotency_key=idempotency_key, reason=reason, actor=actor,
                require_funds=True,
            )
            return record
        except InsufficientCredits:
            if attempt == 1 and sum(release(project.id) for release in _overdue_hold_releases):
                continue
            raise InsufficientCredits(
                "not enough available credits", requested=format_amount(amount),
                available=format_amount(project_wallet_figures(project.id).available)) from None
    raise AssertionError("unreachable")


# Bounds where grants enter through the API: each debit reads a wallet's open grants.
MAX_OPEN_GRANTS = 1000


def grant_create(*, project: Project, category: str, amount: int, reason: str, actor: str, idempotency_key: str,
                 priority: int | None = None, effective_at=None, expires_at=None,
                 resource_types: list[str] | None = None) -> Grant:
    """A promotional or granted grant: one ledger transfer promotions/adjustments → wallet that makes it."""
    if category not in (Grant.Category.PROMOTIONAL, Grant.Category.GRANTED):
        raise ValueError("the API grants promotional or granted credits; purchased ones come from top-ups")
    if Grant.objects.filter(wallet__project=project, remaining__gt=0).count() >= MAX_OPEN_GRANTS:
        raise Conflict(f"this wallet has {MAX_OPEN_GRANTS} open grants already", code="too_many_grants")
    promotional = category == Grant.Category.PROMOTIONAL
    record, _ = ledger.transfer(
        project=project, direction="in", amount=amount, idempotency_key=idempotency_key, reason=reason, actor=actor,
        system_code=Account.System.PROMOTIONS if promotional else Account.System.ADJUSTMENTS,
        kind=Transfer.Kind.PROMOTION if promotional else Transfer.Kind.CREDIT,
        grant=GrantTerms(category=category, priority=priority, effective_at=effective_at, expires_at=expires_at,
                         resource_types=resource_types or []))
    return Grant.objects.get(source_transfer=record)


def grant_void(*, grant: Grant, reason: str, actor: str) -> Grant:
    """Void a grant's unspent rest (a reversing transfer wallet → voided, with actor and reason)."""
    return ledger.grant_void(grant_id=grant.id, reason=reason, actor=actor)


def ledger_check_run(*, source: str, record: bool = True) -> tuple[LedgerReport, LedgerCheck | None]:
    """Run the ledger's invariant check (one read snapshot) and, if record, store its result as a
    LedgerCheck row, written after the snapshot ended: the check itself holds no lock and writes nothing."""
    started_at = timezone.now()
    report = full_check()
    if not record:
        return report, None
    row = LedgerCheck.objects.create(
        source=source, started_at=started_at, finished_at=timezone.now(), ok=report.ok,
        wallets_checked=report.wallets_checked, drift_count=len(report.drifts),
        drifts=[drift[:LedgerCheck.DRIFT_CHARS] for drift in report.drifts[:LedgerCheck.DRIFTS_KEPT]],
    )
    return report, row
