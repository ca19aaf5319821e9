"""The SQL statements one reserve and one commit run, through the whole Django stack (auth, middleware,
views), counted after a warm-up pair. Run by `python -m bench --queries` in a subprocess for the bench
database: `python -m bench.queries --key KEY --project SLUG`; prints one JSON line."""

import argparse
import json
import uuid

import django


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--key", required=True)
    parser.add_argument("--project", required=True)
    args = parser.parse_args()
    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_AUTHORIZATION=f"Bearer {args.key}")
    body = {"project": args.project, "resource_type": "vm", "quantity": "1", "amount": "0.01"}

    def call(path: str, data: dict) -> tuple[int, dict, list[str]]:
        with CaptureQueriesContext(connection) as captured:
            answer = client.post(path, data, content_type="application/json", HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex)
        return answer.status_code, answer.json(), [q["sql"] for q in captured.captured_queries]

    out = {}
    for round_ in ("warm-up", "measured"):
        status, reserved, reserve_sql = call("/api/v1/reservations", body)
        if status != 201:
            print(json.dumps({"error": f"reserve answered {status}: {reserved}"}))
            return
        status, committed, commit_sql = call(f"/api/v1/reservations/{reserved['id']}/commit", {})
        if status != 200:
            print(json.dumps({"error": f"commit answered {status}: {committed}"}))
            return
        if round_ == "measured":
            out = {"reserve": reserve_sql, "commit": commit_sql}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
