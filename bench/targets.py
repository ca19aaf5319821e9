"""The speed issue's targets: defined once here, printed by each section and in the report's table."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    figure: str  # what is measured, as the table's first column says it
    op: str  # ">=" or "<=", or "" for a figure that is reported without a bound
    bound: float = 0.0
    unit: str = ""  # appended to the bound and the figure: " ms", "×", " events/s"
    prefix: str = ""  # said before the bound: "hold" for a rate the run must sustain

    def text(self) -> str:
        if not self.op:
            return "reported"
        sign = "≥" if self.op == ">=" else "≤"
        bound = f"{self.bound:,.0f}" if self.bound >= 1000 else f"{self.bound:g}"
        return f"{self.prefix + ' ' if self.prefix else ''}{sign} {bound}{self.unit}"

    def verdict(self, value: float | None) -> str:
        """'met' / 'not met' and by how much, relative to the bound."""
        if not self.op:
            return "reported"
        if value is None or value != value:  # not measured, or NaN
            return "not measured"
        if self.op == ">=":
            if value >= self.bound:
                return f"met, {value / self.bound - 1:.0%} above"
            if value <= 0:
                return "not met"
            return f"not met, {1 - value / self.bound:.0%} short (needs {self.bound / value:.2f}×)"
        if value <= self.bound:
            return f"met, {1 - value / self.bound:.0%} under"
        return f"not met, {value / self.bound - 1:.0%} over (needs {value / self.bound:.2f}× less)"


ADMISSION_100 = Target("reserve + commit over HTTP, 100 wallets, {clients} clients: app / SQL floor (pairs/s)",
                       ">=", 0.5)
P99_100 = Target("p99 per call (app, 100 wallets)", "<=", 30, " ms")
HOT_WALLET = Target("hot wallet: app / hot-wallet floor", ">=", 0.8)
BILLING = Target("billing {projects:,} projects as deployed / SQL floor", "<=", 1.5, "×")
INGEST = Target("ingestion, batches of {batch:,}, {ingest_clients} clients", ">=", 40_000, " events/s", prefix="hold")
GRPC = Target("gRPC pairs/s beside HTTP's (100 wallets)", "")

TARGETS = (ADMISSION_100, P99_100, HOT_WALLET, BILLING, INGEST, GRPC)
