"""Reads of the tenant portal: a user's projects, a project's statement, spend and quotas.

Every project lookup of the portal goes through project_for_member, so a project the user does not
belong to is a 404, never a 403 (its existence is not revealed). Staff see their own memberships here;
everything else is in the admin.
"""

import importlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet, Sum
from django.db.models.functions import TruncDate
from django.http import Http404
from django.utils import timezone

from billing import selectors as billing_selectors
from creditservice.lib.money import credits_to_micros
from payments import selectors as payment_selectors
from payments.models import CheckoutSession
from wallets.models import Membership, Project, Transfer
from wallets.selectors import (
    GrantSummary,
    WalletFigures,
    project_wallet_figures,
    wallet_figures,
    wallet_figures_of,
    wallet_grant_summary,
)

SPEND_CHART_DAYS = 30


def member_projects(user: AbstractBaseUser) -> QuerySet[Project]:
    """The projects the user is a member of, with their wallets, in one query."""
    return Project.objects.filter(memberships__user=user).select_related("wallet").order_by("name", "slug")


def project_for_member(user: AbstractBaseUser, slug: str) -> Project:
    project = member_projects(user).filter(slug=slug).first()
    if project is None:
        raise Http404(f"no project {slug!r}")
    return project


def is_owner(user: AbstractBaseUser, project: Project) -> bool:
    """Owners decide what charges the project's card (auto top-up, saving a card)."""
    return Membership.objects.filter(project=project, user=user, role=Membership.Role.OWNER).exists()


def project_transfers(project: Project) -> QuerySet[Transfer]:
    """The project's statement, newest first (served by the transfer_project_recent index)."""
    return Transfer.objects.filter(project=project).order_by("-id")


def wallet_of(project: Project) -> WalletFigures:
    """Balance, reserved and available as admission sees them (a hold past its expiry is freed)."""
    return wallet_figures_of(project.wallet)


def wallet_grants(project: Project) -> GrantSummary:
    """Spendable credits by grant category and what of them expires within 30 days, as the wallet API says."""
    return wallet_grant_summary(project.wallet.id)


def wallet_read_after(project: Project) -> WalletFigures:
    """wallet_of, read again now: for a page that shows the wallet beside something read after the
    project (a checkout session), so that a session already funded never comes with the balance from
    before its top-up (the wallet loaded with the project may predate the webhook that funded it)."""
    return project_wallet_figures(project.id)


def project_cards(projects: list[Project]) -> list[tuple[Project, WalletFigures]]:
    """Each project with its wallet figures, in one read of overdue holds for the whole list."""
    figures = wallet_figures([project.wallet for project in projects])
    return [(project, figures[project.id]) for project in projects]


def project_burn(project: Project) -> billing_selectors.Burn:
    """Burn rate per hour and runway, as GET /projects/{slug}/wallet answers them."""
    return billing_selectors.project_burn(project)


@dataclass(frozen=True)
class StatementRow:
    transfer: Transfer
    signed_amount: int  # micro-credits, as the wallet saw it
    charge: billing_selectors.ChargeLine | None  # a usage charge or credit-back: what it was for

    @property
    def description(self) -> str:
        return self.charge.description if self.charge is not None else self.transfer.reason


def statement_rows(project: Project, transfers: list[Transfer]) -> list[StatementRow]:
    """One page of the statement, usage lines explained by their charges (one query for the page)."""
    lines = billing_selectors.charge_lines(transfers)
    wallet_id = project.wallet.id
    return [StatementRow(transfer=t, signed_amount=t.signed_amount_for(wallet_id), charge=lines.get(t.id))
            for t in transfers]


@dataclass(frozen=True)
class DailySpend:
    day: date
    amount: int  # micro-credits spent that UTC day


def daily_spend(project: Project, *, days: int = SPEND_CHART_DAYS, today: date | None = None) -> list[DailySpend]:
    """Credits that left the wallet per UTC day, for the last `days` days ending today (zeros included).

    Spend is every transfer out of the wallet (usage, reservations, debits, refunds), so the chart
    shows what the balance actually lost each day.
    """
    first, start, end = last_utc_days(days=days, today=today)
    rows = (
        Transfer.objects.filter(project=project, debit_account_id=project.wallet.id,
                                created_at__gte=start, created_at__lt=end)
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("day")
        .annotate(total=Sum("amount"))
    )
    return daily_series({row["day"]: row["total"] for row in rows}, first=first, days=days)


def last_utc_days(*, days: int, today: date | None = None) -> tuple[date, datetime, datetime]:
    """(first day, its UTC midnight, the UTC midnight after today) of the `days` UTC days ending today."""
    today = today or timezone.now().astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    return (first, datetime.combine(first, datetime.min.time(), tzinfo=UTC),
            datetime.combine(today + timedelta(days=1), datetime.min.time(), tzinfo=UTC))


def daily_series(totals: dict[date, int], *, first: date, days: int) -> list[DailySpend]:
    """One DailySpend per day from first on, a day without a total at zero, so a chart has no gaps."""
    return [DailySpend(day=first + timedelta(days=i), amount=totals.get(first + timedelta(days=i), 0))
            for i in range(days)]


def _optional(module: str, name: str) -> Any | None:
    """A function another app may provide; None while it does not exist, so the portal still renders."""
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def project_quotas(project: Project) -> list | None:
    """The quotas engine's view of the project's quotas and usage, or None when quotas are not available."""
    reader = _optional("quotas.selectors", "project_quotas")
    return list(reader(project)) if reader else None


def budget_status(project: Project) -> Any | None:
    reader = _optional("quotas.selectors", "budget_status")
    return reader(project) if reader else None


@dataclass(frozen=True)
class TopUpLimits:
    enabled: bool
    presets: list[int]  # micro-credits
    minimum: int
    maximum: int


def topup_limits() -> TopUpLimits:
    bounds = payment_selectors.topup_bounds()
    presets = [credits_to_micros(p) for p in settings.TOPUP_PRESETS]
    return TopUpLimits(
        # Without a Stripe key the portal works read-only: the button is shown disabled with a reason.
        enabled=payment_selectors.billing_enabled(),
        presets=[p for p in presets if bounds.minimum <= p <= bounds.maximum],
        minimum=bounds.minimum,
        maximum=bounds.maximum,
    )


def checkout_session(project: Project, session_id: str) -> CheckoutSession | None:
    """The project's checkout session with that Stripe id, or None (another project's id included)."""
    if not session_id or len(session_id) > 255:
        return None
    return payment_selectors.checkout_session_for_project(project, session_id)
