"""A bar chart of daily spend, laid out in Python and drawn as inline SVG by a template (no JS, no CDN)."""

from dataclasses import dataclass
from datetime import date

from creditservice.lib.money import MICROS_PER_CREDIT, format_amount

from .selectors import DailySpend

WIDTH = 480
HEIGHT = 200
PLOT_LEFT = 44  # room for the y-axis labels
PLOT_TOP = 10
PLOT_BOTTOM = 24  # room for the date labels
GAP = 2


@dataclass(frozen=True)
class Bar:
    day: date
    amount: int  # micro-credits
    x: float
    y: float
    width: float
    height: float

    @property
    def label(self) -> str:
        return f"{self.day:%b %-d}: {format_amount(self.amount)} credits"


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class SpendChart:
    bars: list[Bar]
    ticks: list[Tick]
    total: int
    peak: DailySpend | None
    verb: str = "spent"  # what the credits were: "spent" from a wallet, "charged" by billing
    width: int = WIDTH
    height: int = HEIGHT
    plot_left: int = PLOT_LEFT
    plot_right: int = WIDTH
    baseline: int = HEIGHT - PLOT_BOTTOM

    @property
    def first_day(self) -> date:
        return self.bars[0].day

    @property
    def last_day(self) -> date:
        return self.bars[-1].day

    @property
    def summary(self) -> str:
        text = (f"{format_amount(self.total)} credits {self.verb} from {self.first_day:%b %-d} "
                f"to {self.last_day:%b %-d}.")
        if self.peak is not None:
            text += f" Highest day: {self.peak.day:%b %-d} with {format_amount(self.peak.amount)} credits."
        return text


def _scale_top(peak: int) -> int:
    """A round axis maximum at or above the peak (1, 2, 5 × 10^n credits), in micro-credits."""
    if peak <= 0:
        return MICROS_PER_CREDIT
    step = 1
    while True:
        for factor in (1, 2, 5):
            top = factor * step
            if top >= peak:
                return top
        step *= 10


def spend_chart(days: list[DailySpend], *, verb: str = "spent") -> SpendChart:
    peak = max(days, key=lambda d: d.amount) if days else None
    if peak is not None and peak.amount == 0:
        peak = None
    top = _scale_top(peak.amount if peak else 0)
    plot_height = HEIGHT - PLOT_TOP - PLOT_BOTTOM
    slot = (WIDTH - PLOT_LEFT) / max(len(days), 1)
    bars = []
    for index, spend in enumerate(days):
        height = round(plot_height * spend.amount / top, 2)
        if spend.amount and height < 1:
            height = 1  # a day with any spend stays visible
        bars.append(Bar(day=spend.day, amount=spend.amount, x=round(PLOT_LEFT + index * slot + GAP / 2, 2),
                        y=round(HEIGHT - PLOT_BOTTOM - height, 2), width=round(slot - GAP, 2), height=height))
    # Gridlines at 0, half and the top; the half line only where it is an exact amount.
    levels = [0, top // 2, top] if top % 2 == 0 else [0, top]
    ticks = [Tick(y=round(HEIGHT - PLOT_BOTTOM - plot_height * level / top, 2), label=format_amount(level))
             for level in levels]
    return SpendChart(bars=bars, ticks=ticks, total=sum(d.amount for d in days), peak=peak, verb=verb)
