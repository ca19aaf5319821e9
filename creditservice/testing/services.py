"""Print the environment `make test` runs with: PostgreSQL and Redis when they answer.

DATABASE_URL / CELERY_BROKER_URL already set win. Under CI=true a missing server is an error.
"""

import os
import socket
import sys


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def main() -> int:
    ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    exports = {"CREDITSERVICE_TESTING": "1"}
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url and answers("127.0.0.1", 5432):
        database_url = "postgres://postgres@127.0.0.1:5432/creditservice"
    if database_url:
        exports["DATABASE_URL"] = database_url
    elif ci:
        print("echo 'CI=true but no PostgreSQL answers at 127.0.0.1:5432' >&2; exit 1")
        return 0
    broker = os.environ.get("CELERY_BROKER_URL") or os.environ.get("REDIS_URL", "")
    if not broker and answers("127.0.0.1", 6379):
        broker = "redis://127.0.0.1:6379/15"
    if broker:
        exports["CELERY_BROKER_URL"] = broker
        exports["TEST_REDIS_URL"] = broker
    elif ci:
        print("echo 'CI=true but no Redis answers at 127.0.0.1:6379' >&2; exit 1")
        return 0
    for name, value in exports.items():
        print(f"export {name}='{value}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
