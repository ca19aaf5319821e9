"""Writes of billing. The public entry points, by use case:

- runs: billing_run_execute(*, window_start, trigger="", parallel=False) bills one closed window;
  billing_windows_due() lists the windows to bill; billing_run_work(*, run_id) is a chunk worker;
  billing_catch_up() is the hourly beat; billing_owed_retry(*, owed_id) retries what a run still owes.
- lifecycle: projects_enter_grace_if_unfunded, project_reactivate_if_funded (the funded hook),
  project_enter_grace_if_taken_back (the unfunded hook), project_suspend_by_staff,
  project_lift_suspension, lifecycle_sweep.
- webhooks: webhook_event_emit, webhook_delivery_attempt, webhook_deliveries_redeliver.
"""

from .lifecycle import (
    lifecycle_sweep,
    project_enter_grace_if_taken_back,
    project_lift_suspension,
    project_reactivate_if_funded,
    project_suspend_by_staff,
    projects_enter_grace_if_unfunded,
)
from .runs import (
    RunOutcome,
    billing_catch_up,
    billing_owed_retry,
    billing_run_claim,
    billing_run_execute,
    billing_run_work,
    billing_windows_due,
)
from .webhooks import webhook_deliveries_redeliver, webhook_delivery_attempt, webhook_event_emit

__all__ = [
    "RunOutcome", "billing_catch_up", "billing_owed_retry", "billing_run_claim", "billing_run_execute",
    "billing_run_work", "billing_windows_due",
    "lifecycle_sweep", "project_enter_grace_if_taken_back", "project_lift_suspension", "project_reactivate_if_funded",
    "project_suspend_by_staff", "projects_enter_grace_if_unfunded",
    "webhook_deliveries_redeliver", "webhook_delivery_attempt", "webhook_event_emit",
]
