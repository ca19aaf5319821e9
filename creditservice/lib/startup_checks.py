"""Start-up warnings said once per start, not once per process.

A configuration warning (payments.W001: no Stripe key) is a Django system check, which manage.py commands run
and print; a server that runs no checks (gunicorn, a Celery worker) logs it from its AppConfig.ready(). `make
run` starts five or six processes, and each said it again. scripts/run_all.sh shows the checks once
(`manage.py check`, or `make run`'s migrate already did) and starts the rest with CREDITSERVICE_CHECKS_SHOWN=1:
they neither print nor log the warnings. Errors are never hidden: they stop start-up wherever they are found.
"""

import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.core import checks

SHOWN_ENV = "CREDITSERVICE_CHECKS_SHOWN"


def _already_shown() -> bool:
    return os.environ.get(SHOWN_ENV) == "1"


def _quiet_when_shown(check: Callable) -> Callable:
    @functools.wraps(check)
    def wrapper(app_configs, **kwargs) -> list[checks.CheckMessage]:
        problems = check(app_configs, **kwargs)
        return [problem for problem in problems if problem.is_serious()] if _already_shown() else problems

    return wrapper


def register_startup_check(check: Callable, logger: logging.Logger) -> None:
    """Register `check` as a system check, and log what it finds in a process that runs no checks itself."""
    checks.register(_quiet_when_shown(check))
    # manage.py commands run the checks and print them (or skip them on purpose); tests assert on checks.
    if settings.TESTING or Path(sys.argv[0]).name == "manage.py":
        return
    for problem in _quiet_when_shown(check)(None):
        logger.log(problem.level, "%s (%s)", problem.msg, problem.id)
