"""A local fake of the parts of Stripe's HTTP API that top-ups use, for tests and the browser test.

    fake = FakeStripe(); fake.start()           # or the `fake_stripe` pytest fixture
    settings.STRIPE_API_BASE = fake.base_url   # the real `stripe` library then talks to it
    fake.webhook_url = live_server.url + "/stripe/webhook"

It answers POST /v1/checkout/sessions (form-encoded, as the library sends it),
GET /v1/checkout/sessions/<id> and GET /v1/payment_intents/<id>, records every request's params and headers (Idempotency-Key too), and
serves a hosted payment page GET /pay/<id> whose "Pay" button (POST /pay/<id>) marks the session
paid, delivers a signed `checkout.session.completed` event to `webhook_url`, and redirects (303) to
the session's success_url. Nothing here talks to anything but 127.0.0.1.
"""

import html
import itertools
import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from .signing import TEST_WEBHOOK_SECRET, sign_payload

TEST_SECRET_KEY = "sk_test_fake"


def decode_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding back into nested data: metadata[project]=x, line_items[0][quantity]=1."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        head, _, rest = key.partition("[")
        parts = [head] + ([p.rstrip("]") for p in ("[" + rest).split("[")[1:]] if rest else [])
        node: Any = root
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            next_is_list = not last and parts[index + 1].isdigit()
            if isinstance(node, list):
                position = int(part)
                while len(node) <= position:
                    node.append(None)
                if last:
                    node[position] = value
                else:
                    if node[position] is None:
                        node[position] = [] if next_is_list else {}
                    node = node[position]
            else:
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, [] if next_is_list else {})
    return root


@dataclass
class RecordedRequest:
    method: str
    path: str
    params: dict[str, Any]
    headers: dict[str, str]

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")


@dataclass
class Delivery:
    event: dict[str, Any]
    status: int
    body: str


@dataclass
class FakeStripe:
    webhook_secret: str = TEST_WEBHOOK_SECRET
    secret_key: str = TEST_SECRET_KEY
    webhook_url: str = ""
    # Deliver checkout.session.completed when the customer presses "Pay" (else call deliver() yourself).
    deliver_on_pay: bool = True
    # Pay with a delayed method: completed arrives "unpaid", async_payment_succeeded follows on settle().
    delayed_payment: bool = False
    requests: list[RecordedRequest] = field(default_factory=list)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    # Errors to answer the next API calls with, as (HTTP status, Stripe error message).
    fail_next: list[tuple[int, str]] = field(default_factory=list)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    payment_intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Outcomes of the next new off-session PaymentIntents: "succeeded" (the default when empty) or
    # "declined" (402 card_error, as Stripe answers a declined confirm=true, off_session=true).
    payment_outcomes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._by_idempotency_key: dict[str, str] = {}
        # Stripe replays a repeated Idempotency-Key's first answer, errors included: (path, key) → answer.
        self._answers: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
        self._server: ThreadingHTTPServer | None = None
        self._ids = itertools.count(1)

    # --- life cycle -----------------------------------------------------------------------------
    def start(self) -> "FakeStripe":
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fake-stripe", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def reset(self) -> None:
        """Forget every session, key, request and delivery: for a test that rolls its database back
        between examples, where our row ids (and so the Idempotency-Keys sent here) come round again."""
        with self._lock:
            self.requests.clear()
            self.sessions.clear()
            self.deliveries.clear()
            self.fail_next.clear()
            self._by_idempotency_key.clear()
            self._answers.clear()
            self.customers.clear()
            self.payment_intents.clear()
            self.payment_outcomes.clear()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # --- what the tests read --------------------------------------------------------------------
    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path == path]

    @property
    def created_sessions(self) -> list[RecordedRequest]:
        return self.requests_to("POST", "/v1/checkout/sessions")

    def last_session(self) -> dict[str, Any]:
        with self._lock:
            return list(self.sessions.values())[-1]

    # --- Stripe's side of a payment -------------------------------------------------------------
    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_test_{next(self._ids):04d}{secrets.token_hex(8)}"

    def create_session(self, params: dict[str, Any], idempotency_key: str | None) -> dict[str, Any]:
        with self._lock:
            if idempotency_key and idempotency_key in self._by_idempotency_key:
                # Stripe answers a repeated Idempotency-Key with the object it made the first time.
                return self.sessions[self._by_idempotency_key[idempotency_key]]
            session_id = self._new_id("cs")
            items = params.get("line_items") or []
            amount_total = sum(
                int(item.get("price_data", {}).get("unit_amount", 0)) * int(item.get("quantity", 1)) for item in items
            )
            currency = (items[0].get("price_data", {}).get("currency") if items else None) or "usd"
            if params.get("mode") == "setup":
                amount_total = None
            session = {
                "id": session_id, "object": "checkout.session", "livemode": False, "mode": params.get("mode"),
                "customer": params.get("customer"), "setup_intent": None,
                "_setup_intent_metadata": (params.get("setup_intent_data") or {}).get("metadata") or {},
                "url": f"{self.base_url}/pay/{session_id}", "status": "open", "payment_status": "unpaid",
                "amount_total": amount_total, "amount_subtotal": amount_total, "currency": currency,
                "metadata": params.get("metadata") or {}, "client_reference_id": params.get("client_reference_id"),
                "success_url": params.get("success_url"), "cancel_url": params.get("cancel_url"),
                "payment_intent": None, "created": int(time.time()),
                "expires_at": int(time.time()) + 86400,
                "_payment_intent_metadata": (params.get("payment_intent_data") or {}).get("metadata") or {},
                "_setup_future_usage": (params.get("payment_intent_data") or {}).get("setup_future_usage"),
            }
            self.sessions[session_id] = session
            if idempotency_key:
                self._by_idempotency_key[idempotency_key] = session_id
            return session

    def public(self, session: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in session.items() if not k.startswith("_")}

    def event(self, event_type: str, obj: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
        """A Stripe event envelope around an object (a copy, so later changes do not leak into it)."""
        return {
            "id": event_id or self._new_id("evt"), "object": "event", "api_version": "2025-09-30.clover",
            "created": int(time.time()), "livemode": False, "pending_webhooks": 1, "type": event_type,
            "request": {"id": None, "idempotency_key": None},
            "data": {"object": json.loads(json.dumps(self.public(obj) if obj.get("object") == "checkout.session"
                                                     else obj))},
        }

    def pay(self, session_id: str) -> list[Delivery]:
        """The customer pays: the session completes, and its event is delivered when deliver_on_pay is on."""
        with self._lock:
            session = self.sessions[session_id]
            session["status"] = "complete"
            if not session["payment_intent"]:
                session["payment_intent"] = self._paid_intent(session)["id"]
            session["payment_status"] = "unpaid" if self.delayed_payment else "paid"
            completed = self.event("checkout.session.completed", session)
        return [self.deliver(completed)] if self.deliver_on_pay else []

    def _paid_intent(self, session: dict[str, Any]) -> dict[str, Any]:
        """The PaymentIntent behind a paid session (call with the lock held): as Stripe, the card used is its
        payment_method, attached to the session's customer when setup_future_usage asked to keep it."""
        intent = {
            "id": self._new_id("pi"), "object": "payment_intent", "amount": session["amount_total"],
            "amount_received": session["amount_total"], "currency": session["currency"],
            "customer": session["customer"], "payment_method": self._new_id("pm"),
            "setup_future_usage": session["_setup_future_usage"], "status": "succeeded",
            "metadata": dict(session["_payment_intent_metadata"]), "livemode": False, "created": int(time.time()),
        }
        self.payment_intents[intent["id"]] = intent
        return intent

    def complete_setup(self, session_id: str) -> dict[str, Any]:
        """The customer saves a card in a setup-mode session: returns the setup_intent.succeeded event
        (delivered to webhook_url too when deliver_on_pay is on and a webhook_url is set)."""
        with self._lock:
            session = self.sessions[session_id]
            assert session["mode"] == "setup", "not a setup-mode session"
            payment_method = self._new_id("pm")
            setup_intent = {
                "id": self._new_id("seti"), "object": "setup_intent", "status": "succeeded", "usage": "off_session",
                "customer": session["customer"], "payment_method": payment_method,
                "metadata": dict(session["_setup_intent_metadata"]),
            }
            session.update(status="complete", payment_status="no_payment_required", setup_intent=setup_intent["id"])
            event = self.event("setup_intent.succeeded", setup_intent)
        if self.deliver_on_pay and self.webhook_url:
            self.deliver(event)
        return event

    def create_customer(self, params: dict[str, Any], idempotency_key: str | None) -> tuple[int, dict[str, Any]]:
        def make() -> tuple[int, dict[str, Any]]:
            customer = {"id": self._new_id("cus"), "object": "customer", "name": params.get("name"),
                        "metadata": params.get("metadata") or {}}
            self.customers[customer["id"]] = customer
            return 200, customer
        return self._once("/v1/customers", idempotency_key, make)

    def create_payment_intent(self, params: dict[str, Any], idempotency_key: str | None) -> tuple[int, dict[str, Any]]:
        """confirm=true, off_session=true with a saved card: succeeded at once, or declined (402)."""
        def make() -> tuple[int, dict[str, Any]]:
            outcome = self.payment_outcomes.pop(0) if self.payment_outcomes else "succeeded"
            declined = outcome == "declined"
            intent = {
                "id": self._new_id("pi"), "object": "payment_intent", "amount": int(params.get("amount") or 0),
                "amount_received": 0 if declined else int(params.get("amount") or 0),
                "currency": params.get("currency"), "customer": params.get("customer"),
                "payment_method": params.get("payment_method"), "off_session": params.get("off_session") == "true",
                "confirm": params.get("confirm") == "true", "metadata": params.get("metadata") or {},
                "status": "requires_payment_method" if declined else "succeeded", "livemode": False,
                "last_payment_error": {"code": "card_declined", "message": "Your card was declined."} if declined else None,
                "created": int(time.time()),
            }
            self.payment_intents[intent["id"]] = intent
            if declined:
                return 402, {"error": {"type": "card_error", "code": "card_declined", "decline_code": "generic_decline",
                                       "message": "Your card was declined.", "payment_intent": dict(intent)}}
            return 200, intent
        return self._once("/v1/payment_intents", idempotency_key, make)

    def _once(self, path: str, idempotency_key: str | None, make) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if idempotency_key and (path, idempotency_key) in self._answers:
                return self._answers[(path, idempotency_key)]
            answer = make()
            if idempotency_key:
                self._answers[(path, idempotency_key)] = answer
            return answer

    @property
    def created_payment_intents(self) -> list[RecordedRequest]:
        return self.requests_to("POST", "/v1/payment_intents")

    def payment_intent_event(self, payment_intent_id: str, event_type: str = "payment_intent.succeeded") -> dict[str, Any]:
        with self._lock:
            return self.event(event_type, self.payment_intents[payment_intent_id])

    def payment_intent_charge(self, payment_intent_id: str, amount_refunded: int = 0) -> dict[str, Any]:
        """The charge behind a PaymentIntent (an automatic top-up's), as charge.refunded carries it."""
        with self._lock:
            intent = self.payment_intents[payment_intent_id]
        amount = intent["amount"]
        return {
            "id": f"ch_{payment_intent_id}", "object": "charge", "amount": amount, "amount_captured": amount,
            "amount_refunded": amount_refunded, "currency": intent["currency"], "payment_intent": payment_intent_id,
            "refunded": amount_refunded >= amount, "paid": True, "status": "succeeded",
            "customer": intent.get("customer"), "metadata": dict(intent.get("metadata") or {}),
        }

    def settle(self, session_id: str, succeeded: bool = True) -> Delivery:
        """A delayed payment settles (or fails) days later."""
        with self._lock:
            session = self.sessions[session_id]
            session["payment_status"] = "paid" if succeeded else "unpaid"
            kind = "succeeded" if succeeded else "failed"
            event = self.event(f"checkout.session.async_payment_{kind}", session)
        return self.deliver(event)

    def charge(self, session_id: str, amount_refunded: int = 0) -> dict[str, Any]:
        """The charge behind a paid session, as charge.refunded / disputes carry it."""
        session = self.sessions[session_id]
        return {
            "id": f"ch_{session['payment_intent']}", "object": "charge", "amount": session["amount_total"],
            "amount_captured": session["amount_total"], "amount_refunded": amount_refunded,
            "currency": session["currency"], "payment_intent": session["payment_intent"],
            "refunded": amount_refunded >= session["amount_total"], "paid": True, "status": "succeeded",
            "metadata": dict(session["_payment_intent_metadata"]),
        }

    def deliver(self, event: dict[str, Any], *, secret: str | None = None, timestamp: int | None = None) -> Delivery:
        """POST the event to webhook_url, signed like Stripe signs it."""
        assert self.webhook_url, "set fake.webhook_url (for example live_server.url + '/stripe/webhook')"
        payload = json.dumps(event, indent=2).encode()
        request = urllib.request.Request(self.webhook_url, data=payload, method="POST", headers={
            "Content-Type": "application/json; charset=utf-8", "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": sign_payload(payload, secret or self.webhook_secret, timestamp),
        })
        # Loopback only: never through a proxy from the environment.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=30) as response:
                delivery = Delivery(event, response.status, response.read().decode())
        except urllib.error.HTTPError as error:
            delivery = Delivery(event, error.code, error.read().decode())
        with self._lock:
            self.deliveries.append(delivery)
        return delivery


def _stripe_error(status: int, message: str) -> dict[str, Any]:
    return {"error": {"type": "invalid_request_error" if status < 500 else "api_error", "message": message}}


def _handler_for(fake: FakeStripe) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

        def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, data: dict[str, Any]) -> None:
            self._send(status, json.dumps(data).encode(), "application/json",
                       {"Request-Id": f"req_{secrets.token_hex(6)}", "Stripe-Should-Retry": "false"})

        def _record(self) -> RecordedRequest:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode() if length else ""
            split = urlsplit(self.path)
            pairs = parse_qsl(raw or split.query, keep_blank_values=True)
            recorded = RecordedRequest(self.command, split.path, decode_form(pairs),
                                       {k.lower(): v for k, v in self.headers.items()})
            with fake._lock:
                fake.requests.append(recorded)
            return recorded

        def _api_refusal(self) -> bool:
            if self.headers.get("Authorization") != f"Bearer {fake.secret_key}":
                self._json(401, _stripe_error(401, "Invalid API Key provided"))
                return True
            with fake._lock:
                failure = fake.fail_next.pop(0) if fake.fail_next else None
            if failure:
                self._json(failure[0], _stripe_error(*failure))
                return True
            return False

        def do_GET(self) -> None:
            recorded = self._record()
            path = recorded.path
            if path.startswith("/v1/checkout/sessions/"):
                if self._api_refusal():
                    return
                session = fake.sessions.get(path.rsplit("/", 1)[1])
                if session is None:
                    self._json(404, _stripe_error(404, "No such checkout.session"))
                else:
                    self._json(200, fake.public(session))
            elif path.startswith("/v1/payment_intents/"):
                if self._api_refusal():
                    return
                with fake._lock:
                    intent = fake.payment_intents.get(path.rsplit("/", 1)[1])
                if intent is None:
                    self._json(404, _stripe_error(404, "No such payment_intent"))
                else:
                    self._json(200, intent)
            elif path.startswith("/pay/") and path[5:] in fake.sessions:
                self._send(200, _pay_page(fake.sessions[path[5:]]).encode(), "text/html; charset=utf-8")
            else:
                self._json(404, _stripe_error(404, f"Unrecognized request URL (GET: {path})"))

        def do_POST(self) -> None:
            recorded = self._record()
            path = recorded.path
            if path == "/v1/checkout/sessions":
                if self._api_refusal():
                    return
                session = fake.create_session(recorded.params, recorded.idempotency_key)
                self._json(200, fake.public(session))
            elif path in ("/v1/customers", "/v1/payment_intents"):
                if self._api_refusal():
                    return
                create = fake.create_customer if path == "/v1/customers" else fake.create_payment_intent
                self._json(*create(recorded.params, recorded.idempotency_key))
            elif path.startswith("/pay/") and path[5:] in fake.sessions:
                session_id = path[5:]
                if fake.sessions[session_id]["mode"] == "setup":
                    fake.complete_setup(session_id)
                else:
                    fake.pay(session_id)
                target = (fake.sessions[session_id]["success_url"] or "/").replace("{CHECKOUT_SESSION_ID}", session_id)
                self._send(303, b"", "text/plain", {"Location": target})
            else:
                self._json(404, _stripe_error(404, f"Unrecognized request URL (POST: {path})"))

    return Handler


def _pay_page(session: dict[str, Any]) -> str:
    if session["mode"] == "setup":
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Save a card (test)</title></head>
<body><main><h1>Save a card (test)</h1>
  <form method="post" action="/pay/{html.escape(session["id"])}"><button type="submit" id="pay">Save card</button></form>
</main></body></html>"""
    currency = (session["currency"] or "usd").upper()
    amount = f"{session['amount_total'] / 100:.2f}" if currency not in ("JPY", "KRW") else str(session["amount_total"])
    cancel = html.escape(session["cancel_url"] or "/")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Checkout (test)</title></head>
<body>
  <main>
    <h1>Test checkout</h1>
    <p>Pay <strong id="amount">{html.escape(amount)} {html.escape(currency)}</strong>
       for {html.escape(str(session["metadata"].get("credits", "")))} credits
       ({html.escape(str(session["client_reference_id"] or ""))}).</p>
    <form method="post" action="/pay/{html.escape(session["id"])}">
      <button type="submit" id="pay">Pay</button>
    </form>
    <p><a href="{cancel}" id="cancel">Cancel</a></p>
  </main>
</body></html>"""


@pytest.fixture
def fake_stripe(settings):
    """A started FakeStripe with STRIPE_SECRET_KEY, STRIPE_API_BASE and STRIPE_WEBHOOK_SECRET pointing at it."""
    fake = FakeStripe().start()
    settings.STRIPE_SECRET_KEY = fake.secret_key
    settings.STRIPE_API_BASE = fake.base_url
    settings.STRIPE_WEBHOOK_SECRET = fake.webhook_secret
    try:
        yield fake
    finally:
        fake.stop()
