"""Sign webhook bodies exactly as Stripe does, so tests exercise the real verification."""

import hashlib
import hmac
import json
import time
from typing import Any

TEST_WEBHOOK_SECRET = "whsec_test_creditservice_0123456789abcdef"


def sign_payload(payload: bytes, secret: str = TEST_WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """The Stripe-Signature header: "t=<unix time>,v1=<hex HMAC-SHA256 of '<t>.<body>' keyed by the secret>"."""
    timestamp = int(time.time()) if timestamp is None else int(timestamp)
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def signed_body(event: dict[str, Any], secret: str = TEST_WEBHOOK_SECRET,
                timestamp: int | None = None) -> tuple[bytes, str]:
    """An event as Stripe sends it: compact JSON body and its signature header."""
    payload = json.dumps(event, separators=(",", ":")).encode()
    return payload, sign_payload(payload, secret, timestamp)
