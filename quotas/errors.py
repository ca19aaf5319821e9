"""The refusals of admission control, in the API's one error shape."""

from creditservice.lib.errors import ApiError, PaymentRequired


class ProjectSuspended(ApiError):
    status_code = 403
    code = "project_suspended"


class QuotaExceeded(ApiError):
    status_code = 409
    code = "quota_exceeded"


class BudgetExceeded(PaymentRequired):
    """`available`: what is left of the month's budget (a 402 always says what may still be spent)."""

    code = "budget_exceeded"


class ReservationEnded(ApiError):
    """A transition the reservation's state does not allow; code names the state it is in."""

    status_code = 409
    code = "reservation_ended"

    def __init__(self, status: str, detail: str | None = None, **extra):
        super().__init__(detail or f"the reservation is already {status}", code=f"reservation_{status}", **extra)
