"""Credit grants inside the ledger: every credit into a wallet creates a grant, every debit takes from
the wallet's grants in the draw order and records what it took (GrantDraw), in the transaction of the
transfer and after the wallet row is locked by its UPDATE. The wallet row is the only lock: every
change of a grant happens under it, so each statement here sees the grants as the last holder left them.

Draw order (one rule, DRAW_ORDER_SQL): grants spendable now first, by priority (lower first), then
soonest expires_at (none = last), then oldest (id). A debit that cannot be refused (a commit, a usage
charge, a refund) and finds the spendable grants empty goes on to grants past expires_at whose rest
the expiry task has not moved yet, then to scheduled ones: so no grant ever holds credits the wallet
no longer has. Invariant: the sum of a wallet's remaining is max(balance, 0); a wallet overdrawn by
usage has nothing left in any grant, and the next credit pays that debt first (a draw on itself).

Resource types: a grant with resource_types applies only to those types (applies_to: ",gpu,vm,"; ""
= every type). A debit of a type (a commit: the reservation's; a usage charge: the charge's; a
gateway charge: the route's) first draws, in the draw order, from the spendable grants that apply to
its type. What those do not cover, a debit that cannot be refused takes from the wallet's other
grants in the plain draw order: spendable grants scoped to other types, then past expires_at, then
scheduled (the invariant needs every credit the balance loses to leave some grant). A debit without
a type (a staff debit, a refund) draws in the plain order from all grants.

Admission (holds, debits that need funds, gateway charges) counts only spendable credits:
available = balance - reserved - unspendable, where unspendable is the rest of grants past
expires_at (treated as expired at once, before the beat task moved it) or before effective_at, and
for a hold or charge of a type, of grants scoped to other types only. A hold counts as unspendable
what expires before the hold does (`until` = the reservation's expires_at): a reservation is refused
at reserve time rather than left pending on credits that expire before it may be committed.

Bounds: a debit reads at most the wallet's open grants (grants.MAX_OPEN_GRANTS per wallet for grants
made through the API); a credit-back looks at most CREDIT_BACK_SOURCES source grants.
"""

from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection

from creditservice.lib.pg_arrays import pg_array
from creditservice.lib.queries import db_datetime

from ..models import Grant, GrantDraw, Transfer

_GRANT = Grant._meta.db_table
_DRAW = GrantDraw._meta.db_table
_TRANSFER = Transfer._meta.db_table

DEFAULT_PRIORITY = {Grant.Category.PROMOTIONAL: 10, Grant.Category.GRANTED: 20, Grant.Category.PURCHASED: 50}
CATEGORY_OF_KIND = {Transfer.Kind.TOP_UP: Grant.Category.PURCHASED, Transfer.Kind.PROMOTION: Grant.Category.PROMOTIONAL}
CREDIT_BACK_SOURCES = 100
# Kinds whose debits are given back to their sources by a later credit-back (billing's usage reversal).
CREDIT_BACK_KIND = Transfer.Kind.REVERSAL
CREDITED_BACK_KINDS = (Transfer.Kind.USAGE, Transfer.Kind.REVERSAL)

# %(now)s: spendable (0), past expires_at (1), scheduled (2); then priority, soonest expiry, oldest.
DRAW_ORDER_SQL = (
    "CASE WHEN effective_at > %(now)s THEN 2 WHEN expires_at <= %(now)s THEN 1 ELSE 0 END, "
    "priority, expires_at IS NULL, expires_at, id"
)


# The partial index grant_wallet_restricted's condition, word for word (SQLite uses a partial index
# only when the query repeats its WHERE terms): grants with a date or a resource type scope.
_RESTRICTED = "g.remaining > 0 AND (g.expires_at IS NOT NULL OR g.effective_at IS NOT NULL OR g.applies_to > '')"


def applies_to_value(resource_types: list[str]) -> str:
    """Grant.applies_to for these codes: ",gpu,vm,", or "" for every type."""
    return f",{','.join(resource_types)}," if resource_types else ""


def scope_needle(resource_type: str) -> str:
    """What applies_to contains when a grant applies to `resource_type` (a code)."""
    return f",{resource_type},"


def scope_needle_sql(code: str) -> str:
    """SQL: scope_needle() of the code that the SQL expression `code` gives."""
    return f"',' || {code} || ','"


def _contains_sql(haystack: str, needle: str) -> str:
    """SQL: `needle` occurs in `haystack`. Exact and case-sensitive on both backends (LIKE would need
    "_" escaped and ignores case on SQLite)."""
    function = "strpos" if connection.vendor == "postgresql" else "instr"
    return f"{function}({haystack}, {needle}) > 0"


def applies_sql(column: str, needle: str) -> str:
    """SQL: the grant whose applies_to is `column` applies to the type whose scope_needle is `needle`."""
    return f"({column} = '' OR {_contains_sql(column, needle)})"


def unspendable_sql(wallet_ref: str, until: str, now: str, needle: str | None = None) -> str:
    """SQL: micro-credits of the wallet `wallet_ref` (an SQL expression of its id) that admission may not
    count: the rest of grants expiring at or before `until`, or not effective yet at `now`, and with
    `needle` (an SQL expression of a scope_needle: a hold or charge of that type) of grants scoped to
    other types only. Its WHERE is the partial index grant_wallet_restricted's condition, so a wallet
    without dated or scoped grants costs one empty index probe."""
    elsewhere = f" OR (g.applies_to > '' AND NOT {_contains_sql('g.applies_to', needle)})" if needle else ""
    return (
        f"(SELECT COALESCE(SUM(g.remaining), 0) FROM {_GRANT} g WHERE g.wallet_id = {wallet_ref} "
        f"AND {_RESTRICTED} AND (g.expires_at <= {until} OR g.effective_at > {now}{elsewhere}))"
    )


def unspendable(wallet_ids: list[int], *, now: datetime) -> dict[int, int]:
    """{wallet id: micro-credits not spendable at `now`} for readers (wallets with none are left out)."""
    if not wallet_ids:
        return {}
    out: dict[int, int] = {}
    with connection.cursor() as cursor:
        for start in range(0, len(wallet_ids), 500):
            part = wallet_ids[start:start + 500]
            cursor.execute(
                f"SELECT g.wallet_id, SUM(g.remaining) FROM {_GRANT} g WHERE g.wallet_id IN "
                f"({', '.join(['%s'] * len(part))}) AND {_RESTRICTED} "
                "AND (g.expires_at <= %s OR g.effective_at > %s) GROUP BY g.wallet_id",
                [*part, db_datetime(now), db_datetime(now)])
            out.update({wallet_id: total for wallet_id, total in cursor.fetchall() if total})
    return out


@dataclass(frozen=True)
class GrantTerms:
    """How the grant of a credit is made; None fields take the defaults of its category."""

    category: str | None = None
    priority: int | None = None
    effective_at: datetime | None = None
    expires_at: datetime | None = None
    resource_types: list[str] = field(default_factory=list)


DRAW_BATCH = 500  # debits per draw statement (3 parameters each: within SQLite's variable limit)


def _takes_sql(rows: int | None, *, applicable: bool) -> str:
    """SQL of (transfer_id, grant_id, take) for `rows` debits given as VALUES (transfer id, wallet id,
    amount): each wallet's debits in id order and its open grants in DRAW_ORDER_SQL laid end to end as
    running totals, and each debit takes the overlap of its range with each grant's range. One
    statement however many debits and wallets (the billing batch), and the same rule for a single one.
    applicable: only the grants spendable now that apply to one type (parameters: now, now, needle)."""
    # rows None (PostgreSQL's batch): the debits as three arrays, one statement however many there are.
    values = ("SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[])" if rows is None
              else "VALUES " + ", ".join(["(%s, %s, %s)"] * rows))
    only = (" AND (effective_at IS NULL OR effective_at <= %(now)s) AND (expires_at IS NULL OR expires_at > %(now)s) "
            f"AND {applies_sql('applies_to', '%(needle)s')}") if applicable else ""
    return (
        f"WITH x(transfer_id, wallet_id, amount) AS ({values}), "
        "t AS (SELECT transfer_id, wallet_id, amount, "
        "SUM(amount) OVER (PARTITION BY wallet_id ORDER BY transfer_id) AS t_end FROM x), "
        "g AS (SELECT id, wallet_id, remaining, "
        f"SUM(remaining) OVER (PARTITION BY wallet_id ORDER BY {DRAW_ORDER_SQL}) AS g_end "
        f"FROM {_GRANT} WHERE remaining > 0 AND wallet_id IN (SELECT wallet_id FROM x){only}), "
        "d AS (SELECT t.transfer_id, g.id AS grant_id, g.g_end, "
        "(CASE WHEN t.t_end < g.g_end THEN t.t_end ELSE g.g_end END) "
        "- (CASE WHEN t.t_end - t.amount > g.g_end - g.remaining THEN t.t_end - t.amount ELSE g.g_end - g.remaining END) "
        "AS take FROM t JOIN g ON g.wallet_id = t.wallet_id "
        "AND g.g_end - g.remaining < t.t_end AND t.t_end - t.amount < g.g_end) "
    )


# PostgreSQL: the rest of a draw pass's statement after _takes_sql: remaining -= the takes, one draw row each.
_APPLY_TAKES_PG = (
    f", u AS (UPDATE {_GRANT} SET remaining = {_GRANT}.remaining - s.take FROM "
    "(SELECT grant_id, SUM(take) AS take FROM d GROUP BY grant_id) s WHERE "
    f"{_GRANT}.id = s.grant_id) INSERT INTO {_DRAW} (transfer_id, grant_id, amount) "
    "SELECT transfer_id, grant_id, take FROM d ORDER BY transfer_id, g_end"
)


def draw_statements_pg(*, transfer: str, wallet: str, amount: str, now: str, needle: str) -> str:
    """PostgreSQL, PL/pgSQL: draw() of one debit given as SQL expressions (the ledger's charge function,
    functions.py): with a `needle` (an expression, NULL for a debit without a type) a pass over the grants
    that apply to its type, then a pass in the plain order over what that left, as _draw_pass does. Each
    pass is its own statement, run after the caller has locked the wallet row."""
    applicable = _takes_sql(1, applicable=True).replace("(%s, %s, %s)", f"({transfer}, {wallet}, {amount})", 1)
    plain = _takes_sql(1, applicable=False).replace(
        "(%s, %s, %s)", f"({transfer}, {wallet}, {amount} - COALESCE((SELECT SUM(dr.amount) FROM {_DRAW} dr "
        f"WHERE dr.transfer_id = {transfer}), 0))", 1)
    return (
        f"IF {needle} IS NOT NULL THEN\n"
        f"{applicable.replace('%(now)s', now).replace('%(needle)s', needle)}{_APPLY_TAKES_PG};\n"
        "END IF;\n"
        # A debit amount of 0 or less overlaps no grant: nothing is drawn when the first pass covered it.
        f"{plain.replace('%(now)s', now)}{_APPLY_TAKES_PG};\n"
    )


def _draw_pass(debits: list[tuple[int, int, int]], *, now: datetime, needle: str | None) -> list[tuple[int, int, int]]:
    """One pass of draw_many over (transfer id, wallet id, amount): in the plain order (needle None), or
    from the applicable grants only. Returns what the pass left undrawn, as debits (only asked for, and
    only computed, with a needle)."""
    left: list[tuple[int, int, int]] = []
    # PostgreSQL: the whole batch in one statement, the debits as three arrays (1,500 placeholders a
    # statement cost the driver more Python than the draw cost the server); SQLite: DRAW_BATCH at a time.
    pg = connection.vendor == "postgresql"
    batch = max(len(debits), 1) if pg else DRAW_BATCH
    for start in range(0, len(debits), batch):
        part = debits[start:start + batch]
        if pg:
            params: list = [pg_array([debit[i] for debit in part], quote=False) for i in range(3)]
        else:
            params = [value for debit in part for value in debit]
        params += [db_datetime(now), db_datetime(now)]
        if needle is not None:
            params += [db_datetime(now), db_datetime(now), needle]
        sql = _takes_sql(None if pg else len(part), applicable=needle is not None)
        sql = sql.replace("%(now)s", "%s").replace("%(needle)s", "%s")
        with connection.cursor() as cursor:
            if pg:
                cursor.execute(sql + _APPLY_TAKES_PG + (" RETURNING transfer_id, amount" if needle is not None else ""),
                               params)
                taken_rows = cursor.fetchall() if needle is not None else []
            else:
                cursor.execute(sql + "SELECT grant_id, take, transfer_id FROM d ORDER BY transfer_id, g_end", params)
                rows = cursor.fetchall()
                totals: dict[int, int] = {}
                for grant_id, take, _ in rows:
                    totals[grant_id] = totals.get(grant_id, 0) + take
                cursor.executemany(f"UPDATE {_GRANT} SET remaining = remaining - %s WHERE id = %s",
                                   [(take, grant_id) for grant_id, take in totals.items()])
                cursor.executemany(f"INSERT INTO {_DRAW} (transfer_id, grant_id, amount) VALUES (%s, %s, %s)",
                                   [(transfer_id, grant_id, take) for grant_id, take, transfer_id in rows])
                taken_rows = [(transfer_id, take) for _, take, transfer_id in rows]
        if needle is not None:
            taken: dict[int, int] = {}
            for transfer_id, take in taken_rows:
                taken[transfer_id] = taken.get(transfer_id, 0) + take
            left += [(transfer_id, wallet_id, amount - taken.get(transfer_id, 0))
                     for transfer_id, wallet_id, amount in part if amount > taken.get(transfer_id, 0)]
    return left


def draw_many(debits: list[tuple[int, int, int, str | None]], *, now: datetime) -> None:
    """For each (transfer id, wallet id, amount, resource type code or None) of debits already applied to
    their wallets: take the amount from the wallet's grants in the draw order and record the draws (less
    when the grants hold less: an overdraft).

    Debits of a type draw first, one pass per type in the batch, from the spendable grants that apply to
    it; then what is left of them, and the debits without a type, in one pass in the plain order. So
    every type takes from its own grants before any debit spills over onto grants scoped to another.
    PostgreSQL: one statement per DRAW_BATCH debits and pass; SQLite: one SELECT, then one UPDATE and
    one INSERT batch. A single debit of a type that its grants cover is one pass."""
    by_type: dict[str, list[tuple[int, int, int]]] = {}
    plain: list[tuple[int, int, int]] = []
    for transfer_id, wallet_id, amount, resource_type in debits:
        (by_type.setdefault(resource_type, []) if resource_type else plain).append((transfer_id, wallet_id, amount))
    for resource_type in sorted(by_type):
        plain += _draw_pass(sorted(by_type[resource_type]), now=now, needle=scope_needle(resource_type))
    if plain:
        _draw_pass(sorted(plain), now=now, needle=None)


def draw(*, wallet_id: int, transfer_id: int, amount: int, now: datetime, resource_type: str | None = None) -> None:
    """draw_many for one debit (a commit, a charge, a debit); resource_type: the code it is spent on."""
    draw_many([(transfer_id, wallet_id, amount, resource_type)], now=now)


def _write_draws(cursor, transfer_id: int, takes: list[tuple[int, int]]) -> None:
    """remaining -= take for each (grant, take) (negative: given back) and one draw row each."""
    if not takes:
        return
    cursor.executemany(f"UPDATE {_GRANT} SET remaining = remaining - %s WHERE id = %s",
                       [(take, grant_id) for grant_id, take in takes])
    cursor.executemany(f"INSERT INTO {_DRAW} (transfer_id, grant_id, amount) VALUES (%s, %s, %s)",
                       [(transfer_id, grant_id, take) for grant_id, take in takes])


def draw_from(*, grant_id: int, transfer_id: int, amount: int) -> None:
    """Take `amount` from one grant (its expiry or void: the transfer moves exactly its rest)."""
    with connection.cursor() as cursor:
        _write_draws(cursor, transfer_id, [(grant_id, amount)])


# The metadata key that names a card top-up on both its funding transfer and its refunds: a Checkout
# top-up's row, or an automatic top-up's charge row.
REFUND_SOURCE_KEYS = ("checkout_session", "autotopup_charge")


def draw_refund(*, wallet_id: int, transfer_id: int, amount: int, metadata: dict, now: datetime) -> None:
    """A card refund takes first from the purchased grant of its own top-up (the funding transfer names the
    same checkout session or automatic charge), then in the draw order."""
    source = None
    for key in REFUND_SOURCE_KEYS:
        if metadata.get(key) is not None:
            source = (Grant.objects.filter(wallet_id=wallet_id, remaining__gt=0, source_transfer__kind=Transfer.Kind.TOP_UP,
                                           **{f"source_transfer__metadata__{key}": metadata[key]})
                      .values_list("id", "remaining").first())
            break
    if source is not None:
        take = min(source[1], amount)
        draw_from(grant_id=source[0], transfer_id=transfer_id, amount=take)
        amount -= take
    if amount > 0:
        draw(wallet_id=wallet_id, transfer_id=transfer_id, amount=amount, now=now)


def credit(*, wallet_id: int, transfer_id: int, kind: str, amount: int, balance_after: int, reason: str,
           actor: str, terms: GrantTerms | None) -> None:
    """The grant side of a credit of `amount` that left the wallet at `balance_after` (micro-credits).

    The wallet's grants gain min(amount, max(balance_after, 0)) in total (what was overdrawn is paid
    first). A credit-back (CREDIT_BACK_KIND) gives that back to the open grants its usage drew from,
    most recently drawn first; whatever is not given back makes a new grant of this transfer, its
    category from the kind (a top-up: purchased, a promotion: promotional, anything else: granted).
    """
    gain = min(amount, max(balance_after, 0))
    returned = 0
    with connection.cursor() as cursor:
        if kind == CREDIT_BACK_KIND and gain > 0:
            returned = _give_back(cursor, wallet_id=wallet_id, transfer_id=transfer_id, amount=gain)
        rest = amount - returned
        if rest <= 0:
            return
        terms = terms or GrantTerms()
        category = terms.category or CATEGORY_OF_KIND.get(kind, Grant.Category.GRANTED)
        grant = Grant.objects.create(
            wallet_id=wallet_id, category=category, amount=rest, remaining=gain - returned,
            priority=DEFAULT_PRIORITY[category] if terms.priority is None else terms.priority,
            effective_at=terms.effective_at, expires_at=terms.expires_at, resource_types=list(terms.resource_types),
            applies_to=applies_to_value(list(terms.resource_types)),
            reason=reason[:500], actor=actor[:100], source_transfer_id=transfer_id)
        if grant.remaining < rest:
            # The part that paid what the wallet owed: drawn from the new grant at once, so it shows.
            cursor.execute(f"INSERT INTO {_DRAW} (transfer_id, grant_id, amount) VALUES (%s, %s, %s)",
                           [transfer_id, grant.id, rest - grant.remaining])


def _give_back(cursor, *, wallet_id: int, transfer_id: int, amount: int) -> int:
    """Give up to `amount` back to the open grants usage drew from (net of earlier credit-backs), most
    recently drawn first; returns what was given back."""
    kinds = [str(k) for k in CREDITED_BACK_KINDS]
    cursor.execute(
        f"SELECT d.grant_id, SUM(d.amount), MAX(d.id) FROM {_DRAW} d JOIN {_GRANT} g ON g.id = d.grant_id "
        f"JOIN {_TRANSFER} t ON t.id = d.transfer_id WHERE g.wallet_id = %s AND g.closed_at IS NULL "
        f"AND t.kind IN ({', '.join(['%s'] * len(kinds))}) GROUP BY d.grant_id HAVING SUM(d.amount) > 0 "
        f"ORDER BY MAX(d.id) DESC LIMIT {CREDIT_BACK_SOURCES}",
        [wallet_id, *kinds])
    takes, left = [], amount
    for grant_id, net, _ in cursor.fetchall():
        if left <= 0:
            break
        give = min(net, left)
        takes.append((grant_id, -give))
        left -= give
    _write_draws(cursor, transfer_id, takes)
    return amount - left
