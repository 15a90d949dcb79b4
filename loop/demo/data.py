"""The demo repository's data: its people, and the six PRs to simulate.

`loop.demo.repo` builds the repository from this: the initial tree (`loop.demo.files`), then
each of `PR_SPECS` committed and merged in order. Each spec carries the agent session its trailers
state (`AgentIdentity`), so attribution can be tested against it. Changing any of it changes the
generated shas, which tests and docs name.
"""

from __future__ import annotations

from dataclasses import dataclass

from attribution.records import AgentIdentity
from loop.demo.files import (
    API_106,
    CART_101,
    MAKEFILE_102,
    MIGRATION_104,
    PAYMENT_103,
    QUERIES_104,
    QUERIES_106,
    README_102,
    TAX_105,
    TEST_CART_101,
    TEST_PAYMENT_103,
)

REPO = "acme/checkout"
CULPRIT_NUMBER = 103


@dataclass(frozen=True, slots=True)
class Person:
    """A GitHub login and the git identity it commits as."""

    login: str
    name: str
    email: str


@dataclass(frozen=True, slots=True)
class PRSpec:
    """A PR to simulate: its author and session, its commits (message, files written whole), and
    how it is merged. `closes` names the spec as `Closes #N` in the description, not a trailer."""

    number: int
    title: str
    branch: str
    author: Person
    description: str
    identity: AgentIdentity
    commits: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
    labels: tuple[str, ...] = ()
    squash: bool = False
    closes: bool = False


def _agent(
    name: str, session: str, *, model: str, role: str, spec: int, usage: str
) -> AgentIdentity:
    """An agent session as its trailers state it; `usage` is "tokens/usd"."""
    tokens, cost = usage.split("/")
    return AgentIdentity(
        kind="agent",
        name=name,
        session=session,
        model=model,
        role=role,
        spec=f"{REPO}#{spec}",
        tokens=int(tokens),
        cost_usd=float(cost),
        source="Agent-Name trailer",
    )


MERGER = Person("priya-raman", "Priya Raman", "priya@acme.dev")
GITHUB_COMMITTER = Person("web-flow", "GitHub", "noreply@github.com")
_CLAUDE = Person("claude-code[bot]", "claude-code[bot]", "claude-code@agents.acme.dev")
_CODEX = Person("codex[bot]", "codex[bot]", "codex@agents.acme.dev")
_DEVIN = Person("devin[bot]", "devin[bot]", "devin@agents.acme.dev")
_DANA = Person("dana-ortiz", "Dana Ortiz", "dana@acme.dev")

PR_SPECS: tuple[PRSpec, ...] = (
    PRSpec(
        number=101,
        title="Reject malformed cart line items",
        branch="claude/cart-validation",
        author=_CLAUDE,
        description="Validate quantity and price before pricing a cart, so a malformed line"
        " item is a clear error instead of a negative total.",
        identity=_agent(
            "claude-code",
            "cc-7f3a91e2",
            model="claude-sonnet-4-5",
            role="implementer",
            spec=88,
            usage="48211/0.73",
        ),
        commits=(
            ("Validate line items before pricing", (("checkout/cart.py", CART_101),)),
            ("Test cart validation", (("tests/test_cart.py", TEST_CART_101),)),
        ),
        labels=("agent:claude-code",),
    ),
    PRSpec(
        number=102,
        title="Document running checkout locally",
        branch="dana/readme-local",
        author=_DANA,
        description="How to start the service and its database on a laptop.",
        identity=AgentIdentity(kind="unknown", name=_DANA.login),  # no marker: not "human"
        commits=(
            ("README: running locally", (("README.md", README_102), ("Makefile", MAKEFILE_102))),
        ),
    ),
    PRSpec(
        number=CULPRIT_NUMBER,
        title="Simplify charge(): let the gateway client handle failures",
        branch="codex/simplify-charge",
        author=_CODEX,
        description="The retry loop in `charge` duplicates retries the gateway client already"
        " does, and the token check duplicates the API's validation. Call the client directly.",
        identity=_agent(
            "codex",
            "cx-2b81d0c4",
            model="gpt-5-codex",
            role="refactorer",
            spec=93,
            usage="61877/1.12",
        ),
        commits=(
            (
                "Remove duplicate retry and token check from charge()",
                (
                    ("checkout/payment.py", PAYMENT_103),
                    ("tests/test_payment.py", TEST_PAYMENT_103),
                ),
            ),
        ),
        labels=("agent:codex", "payments"),
    ),
    PRSpec(
        number=104,
        title="Index orders by customer",
        branch="devin/orders-customer-index",
        author=_DEVIN,
        description="Order history by customer scans the orders table: add an index and the query.",
        identity=_agent(
            "devin", "dv-5e0c77aa", model="devin-2", role="implementer", spec=95, usage="23904/0.41"
        ),
        commits=(
            (
                "Add orders(customer_id) index",
                (("db/migrations/002_orders_customer_id.sql", MIGRATION_104),),
            ),
            ("Add orders_for_customer query", (("db/queries.py", QUERIES_104),)),
        ),
        labels=("agent:devin",),
        squash=True,
        closes=True,
    ),
    PRSpec(
        number=105,
        title="Cache tax rates per region",
        branch="claude/tax-rate-cache",
        author=_CLAUDE,
        description="Tax rates change a few times a year, yet every checkout read one from the DB.",
        identity=_agent(
            "claude-code",
            "cc-90d4f1b3",
            model="claude-sonnet-4-5",
            role="implementer",
            spec=97,
            usage="19450/0.29",
        ),
        commits=(("Cache tax rates with lru_cache", (("checkout/tax.py", TAX_105),)),),
        labels=("agent:claude-code",),
    ),
    PRSpec(
        number=106,
        title="Add /healthz with a database ping",
        branch="codex/healthz",
        author=_CODEX,
        description="Kubernetes probes need an endpoint that fails when the DB is unreachable.",
        identity=_agent(
            "codex",
            "cx-c4418e07",
            model="gpt-5-codex",
            role="implementer",
            spec=98,
            usage="15733/0.27",
        ),
        commits=(
            ("Add db ping", (("db/queries.py", QUERIES_106),)),
            ("Add /healthz", (("checkout/api.py", API_106),)),
        ),
        labels=("agent:codex",),
    ),
)
