"""The demo service's files: the initial tree, and each version a demo PR writes.

`INITIAL_FILES` is the first commit of `acme/checkout`; the `NAME_N` texts are what PR #N writes
(whole files, most of them an edit of the initial text). `loop.demo.data.PR_SPECS` says which PR
writes which; changing any text changes the generated shas, which tests and docs name.
"""

_README = """# checkout

Acme's checkout service: prices carts, charges cards through the payment gateway, records orders.
"""

_CART = '''"""Cart pricing."""

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class LineItem:
    sku: str
    quantity: int
    unit_price: Decimal


def subtotal(items: list[LineItem]) -> Decimal:
    return sum((item.unit_price * item.quantity for item in items), Decimal("0"))
'''

_GATEWAY = '''"""Client for the payment gateway."""


class GatewayError(Exception):
    """The gateway refused the charge."""


class TransientGatewayError(GatewayError):
    """The gateway timed out or answered 5xx; the same charge may succeed when retried."""


class GatewayClient:
    def __init__(self, session, base_url: str) -> None:
        self.session = session
        self.base_url = base_url

    def charge(self, *, order_id: str, amount_cents: int, token: str) -> str:
        payload = {"order": order_id, "amount": amount_cents, "source": token}
        response = self.session.post(f"{self.base_url}/v1/charges", json=payload, timeout=5)
        if response.status_code >= 500:
            raise TransientGatewayError(f"gateway answered {response.status_code}")
        if response.status_code != 200:
            raise GatewayError(response.json()["error"])
        return response.json()["id"]
'''

_PAYMENT = '''"""Charges cards through the payment gateway."""

import time

from checkout.gateway import GatewayClient, GatewayError, TransientGatewayError

MAX_ATTEMPTS = 3
BACKOFF_SECONDS = 0.2


def charge(client: GatewayClient, order_id: str, amount_cents: int, token: str | None) -> str:
    """Charge the card and return the gateway's charge id."""
    if token is None:
        raise GatewayError(f"order {order_id}: no payment token")
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return client.charge(order_id=order_id, amount_cents=amount_cents, token=token)
        except TransientGatewayError:
            if attempt == MAX_ATTEMPTS:
                raise
            time.sleep(BACKOFF_SECONDS * attempt)
    raise AssertionError("unreachable")
'''

_TAX = '''"""Sales tax by region."""

from decimal import Decimal

from db.queries import fetch_tax_rate


def tax_for(region: str, amount: Decimal) -> Decimal:
    rate = fetch_tax_rate(region)
    return (amount * rate).quantize(Decimal("0.01"))
'''

_API = '''"""HTTP handlers."""

from aiohttp import web

from checkout import payment

routes = web.RouteTableDef()


@routes.post("/checkout")
async def checkout(request: web.Request) -> web.Response:
    order = await request.json()
    charge_id = payment.charge(
        request.app["gateway"], order["id"], order["amount_cents"], order.get("token")
    )
    return web.json_response({"order": order["id"], "charge": charge_id}, status=201)
'''

_SCHEMA = """CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    amount_cents INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE tax_rates (region TEXT PRIMARY KEY, rate NUMERIC NOT NULL);
"""

_QUERIES = '''"""SQL the service runs."""

from decimal import Decimal

from db.connection import connect


def fetch_tax_rate(region: str) -> Decimal:
    with connect() as db:
        row = db.execute("SELECT rate FROM tax_rates WHERE region = ?", (region,)).fetchone()
    return Decimal(row[0]) if row else Decimal("0")
'''

_TEST_PAYMENT = """from checkout import payment
from checkout.gateway import TransientGatewayError


class FlakyGateway:
    def __init__(self, failures: int) -> None:
        self.failures = failures

    def charge(self, **_: object) -> str:
        if self.failures:
            self.failures -= 1
            raise TransientGatewayError("503")
        return "ch_1"


def test_charge_retries_transient_errors() -> None:
    assert payment.charge(FlakyGateway(failures=2), "o1", 1200, "tok") == "ch_1"
"""

INITIAL_FILES: tuple[tuple[str, str], ...] = (
    ("README.md", _README),
    ("checkout/__init__.py", '"""Acme checkout service."""\n'),
    ("checkout/api.py", _API),
    ("checkout/cart.py", _CART),
    ("checkout/gateway.py", _GATEWAY),
    ("checkout/payment.py", _PAYMENT),
    ("checkout/tax.py", _TAX),
    ("db/queries.py", _QUERIES),
    ("db/schema.sql", _SCHEMA),
    ("tests/test_payment.py", _TEST_PAYMENT),
)

# 101: validation in the cart, and its test.
CART_101 = _CART.replace(
    "\n\n@dataclass",
    "\n\nclass InvalidCart(ValueError):\n"
    '    """A line item the cart cannot price."""\n\n\n@dataclass',
).replace(
    "    return sum(",
    """    for item in items:
        if item.quantity <= 0 or item.unit_price < 0:
            raise InvalidCart(f"{item.sku}: bad quantity or price")
    return sum(""",
)
TEST_CART_101 = """from decimal import Decimal

import pytest

from checkout.cart import InvalidCart, LineItem, subtotal


def test_negative_quantity_is_rejected() -> None:
    with pytest.raises(InvalidCart):
        subtotal([LineItem("sku-1", -1, Decimal("3.50"))])
"""

# 102 (human): how to run it locally.
README_102 = (
    _README + "\n## Running locally\n\n    make db\n    make run\n\nThe service listens on :8080.\n"
)
MAKEFILE_102 = """db:
\tdocker compose up -d postgres

run:
\tpython -m aiohttp.web -P 8080 checkout.api:app
"""

# 103, the culprit: no retry on a transient gateway error, no check for a missing token.
PAYMENT_103 = '''"""Charges cards through the payment gateway."""

from checkout.gateway import GatewayClient


def charge(client: GatewayClient, order_id: str, amount_cents: int, token: str | None) -> str:
    """Charge the card and return the gateway's charge id."""
    return client.charge(order_id=order_id, amount_cents=amount_cents, token=token)
'''
TEST_PAYMENT_103 = _TEST_PAYMENT.replace(
    "test_charge_retries_transient_errors", "test_charge_returns_the_charge_id"
).replace("failures=2", "failures=0")

# 104 (squash-merged): an index, then the query that needs it.
MIGRATION_104 = "CREATE INDEX orders_customer_id ON orders (customer_id, created_at DESC);\n"
_ORDERS_QUERY = """

def orders_for_customer(customer_id: str, limit: int = 20) -> list[tuple[str, int]]:
    with connect() as db:
        return db.execute(
            "SELECT id, amount_cents FROM orders WHERE customer_id = ? ORDER BY created_at DESC"
            " LIMIT ?",
            (customer_id, limit),
        ).fetchall()
"""
QUERIES_104 = _QUERIES + _ORDERS_QUERY

# 105: tax rates cached per region.
TAX_105 = _TAX.replace(
    "from decimal import Decimal\n",
    "from decimal import Decimal\nfrom functools import lru_cache\n",
).replace(
    "def tax_for(region: str, amount: Decimal) -> Decimal:\n    rate = fetch_tax_rate(region)\n",
    """@lru_cache(maxsize=256)
def _rate(region: str) -> Decimal:
    return fetch_tax_rate(region)


def tax_for(region: str, amount: Decimal) -> Decimal:
    rate = _rate(region)
""",
)

# 106: a readiness endpoint, and the ping it runs, appended right after 104's query (so reverting
# 104 alone conflicts with 106: a realistic `RevertConflict`).
API_106 = _API.replace(
    "from checkout import payment\n", "from checkout import payment\nfrom db import queries\n"
).replace(
    "routes = web.RouteTableDef()\n",
    """routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    queries.ping()
    return web.json_response({"status": "ok"})
""",
)
QUERIES_106 = (
    QUERIES_104
    + """

def ping() -> None:
    with connect() as db:
        db.execute("SELECT 1")
"""
)
