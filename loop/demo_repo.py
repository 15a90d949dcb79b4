"""The demo's git repository: a small checkout service and the PRs that were merged into it.

`build_demo_repo` writes a real repository (`acme/checkout`) on disk: an initial commit on `main`,
then six PRs, five written by simulated coding-agent sessions and one by a person, merged the way
GitHub merges them (`--no-ff` merge commits, and one squash merge), each agent PR naming its
session in git trailers as DESIGN.md "Identity" describes. One agent PR, the culprit (#103),
removes the retry and the missing-token check from the payment path; it reverts cleanly, while
#104 alone does not (#106 appended next to its lines). `DemoRepo` is the ground truth the demo
and the tests check Rearguard against: the `MergedPR` records, the deploy plan, the culprit.

Each `MergedPR.identity` is the session the PR's trailers were written from, not a parse of them,
so attribution's trailer parser can be tested against it; its `spec` is `owner/repo#N`, also for
the PR that only says `Closes #N`. Every identity and date is fixed, so the shas are the same on
every run and every machine. Git runs synchronously: this happens once, before the demo starts.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from attribution.records import AgentIdentity, MergedPR

REPO = "acme/checkout"
DEFAULT_BRANCH = "main"
CULPRIT_NUMBER = 103
# Deploy 1 ships #101 and #102, deploy 2 the culprit alone, deploy 3 the rest.
DEPLOY_GROUPS: tuple[tuple[int, ...], ...] = ((101, 102), (103,), (104, 105, 106))
# 2025-03-03T09:00:00Z: the initial commit; each PR lands an hour after the one before.
_EPOCH = 1_740_992_400


@dataclass(frozen=True, slots=True)
class DemoDeploy:
    """One deploy of the demo service: `sha` goes out over `previous_sha`, landing these PRs."""

    sha: str
    previous_sha: str
    pr_numbers: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class DemoRepo:
    """The built repository and the truth about it: what merged, what deployed, what broke."""

    path: Path
    repo: str
    default_branch: str
    initial_sha: str
    prs: tuple[MergedPR, ...]
    deploys: tuple[DemoDeploy, ...]
    culprit_number: int

    def pr(self, number: int) -> MergedPR:
        """The merged PR with this number."""
        for pr in self.prs:
            if pr.number == number:
                return pr
        raise KeyError(number)

    @property
    def culprit(self) -> MergedPR:
        """The PR that introduced the regression."""
        return self.pr(self.culprit_number)


@dataclass(frozen=True, slots=True)
class _Person:
    """A GitHub login and the git identity it commits as."""

    login: str
    name: str
    email: str


@dataclass(frozen=True, slots=True)
class _Spec:
    """A PR to simulate: its author and session, its commits (message, files written whole), and
    how it is merged. `closes` names the spec as `Closes #N` in the description, not a trailer."""

    number: int
    title: str
    branch: str
    author: _Person
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
    )


_MERGER = _Person("priya-raman", "Priya Raman", "priya@acme.dev")
_GITHUB = _Person("web-flow", "GitHub", "noreply@github.com")
_CLAUDE = _Person("claude-code[bot]", "claude-code[bot]", "claude-code@agents.acme.dev")
_CODEX = _Person("codex[bot]", "codex[bot]", "codex@agents.acme.dev")
_DEVIN = _Person("devin[bot]", "devin[bot]", "devin@agents.acme.dev")
_DANA = _Person("dana-ortiz", "Dana Ortiz", "dana@acme.dev")

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

_INITIAL: tuple[tuple[str, str], ...] = (
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
_CART_101 = _CART.replace(
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
_TEST_CART_101 = """from decimal import Decimal

import pytest

from checkout.cart import InvalidCart, LineItem, subtotal


def test_negative_quantity_is_rejected() -> None:
    with pytest.raises(InvalidCart):
        subtotal([LineItem("sku-1", -1, Decimal("3.50"))])
"""

# 102 (human): how to run it locally.
_README_102 = (
    _README + "\n## Running locally\n\n    make db\n    make run\n\nThe service listens on :8080.\n"
)
_MAKEFILE_102 = """db:
\tdocker compose up -d postgres

run:
\tpython -m aiohttp.web -P 8080 checkout.api:app
"""

# 103, the culprit: no retry on a transient gateway error, no check for a missing token.
_PAYMENT_103 = '''"""Charges cards through the payment gateway."""

from checkout.gateway import GatewayClient


def charge(client: GatewayClient, order_id: str, amount_cents: int, token: str | None) -> str:
    """Charge the card and return the gateway's charge id."""
    return client.charge(order_id=order_id, amount_cents=amount_cents, token=token)
'''
_TEST_PAYMENT_103 = _TEST_PAYMENT.replace(
    "test_charge_retries_transient_errors", "test_charge_returns_the_charge_id"
).replace("failures=2", "failures=0")

# 104 (squash-merged): an index, then the query that needs it.
_MIGRATION_104 = "CREATE INDEX orders_customer_id ON orders (customer_id, created_at DESC);\n"
_ORDERS_QUERY = """

def orders_for_customer(customer_id: str, limit: int = 20) -> list[tuple[str, int]]:
    with connect() as db:
        return db.execute(
            "SELECT id, amount_cents FROM orders WHERE customer_id = ? ORDER BY created_at DESC"
            " LIMIT ?",
            (customer_id, limit),
        ).fetchall()
"""
_QUERIES_104 = _QUERIES + _ORDERS_QUERY

# 105: tax rates cached per region.
_TAX_105 = _TAX.replace(
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
_API_106 = _API.replace(
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
_QUERIES_106 = (
    _QUERIES_104
    + """

def ping() -> None:
    with connect() as db:
        db.execute("SELECT 1")
"""
)

_PRS: tuple[_Spec, ...] = (
    _Spec(
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
            ("Validate line items before pricing", (("checkout/cart.py", _CART_101),)),
            ("Test cart validation", (("tests/test_cart.py", _TEST_CART_101),)),
        ),
        labels=("agent:claude-code",),
    ),
    _Spec(
        number=102,
        title="Document running checkout locally",
        branch="dana/readme-local",
        author=_DANA,
        description="How to start the service and its database on a laptop.",
        identity=AgentIdentity(kind="human", name=_DANA.login),
        commits=(
            ("README: running locally", (("README.md", _README_102), ("Makefile", _MAKEFILE_102))),
        ),
    ),
    _Spec(
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
                    ("checkout/payment.py", _PAYMENT_103),
                    ("tests/test_payment.py", _TEST_PAYMENT_103),
                ),
            ),
        ),
        labels=("agent:codex", "payments"),
    ),
    _Spec(
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
                (("db/migrations/002_orders_customer_id.sql", _MIGRATION_104),),
            ),
            ("Add orders_for_customer query", (("db/queries.py", _QUERIES_104),)),
        ),
        labels=("agent:devin",),
        squash=True,
        closes=True,
    ),
    _Spec(
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
        commits=(("Cache tax rates with lru_cache", (("checkout/tax.py", _TAX_105),)),),
        labels=("agent:claude-code",),
    ),
    _Spec(
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
            ("Add db ping", (("db/queries.py", _QUERIES_106),)),
            ("Add /healthz", (("checkout/api.py", _API_106),)),
        ),
        labels=("agent:codex",),
    ),
)


def build_demo_repo(path: Path) -> DemoRepo:
    """Write the demo repository at `path` (absent or empty) and return the truth about it."""
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"demo repository path {path} is not empty")
    path.mkdir(parents=True, exist_ok=True)
    git = _Git(path)
    git.run("init", "--quiet", f"--initial-branch={DEFAULT_BRANCH}")
    _write(path, _INITIAL)
    git.run("add", "--all")
    initial = git.commit("Initial checkout service", author=_MERGER, committer=_MERGER, when=_EPOCH)
    prs = tuple(_land(git, spec, _EPOCH + 3600 * (i + 1)) for i, spec in enumerate(_PRS))
    merge_sha = {pr.number: pr.merge_sha for pr in prs}
    deploys, previous = [], initial
    for group in DEPLOY_GROUPS:
        deploys.append(DemoDeploy(merge_sha[group[-1]], previous, group))
        previous = merge_sha[group[-1]]
    return DemoRepo(
        path=path,
        repo=REPO,
        default_branch=DEFAULT_BRANCH,
        initial_sha=initial,
        prs=prs,
        deploys=tuple(deploys),
        culprit_number=CULPRIT_NUMBER,
    )


def _land(git: _Git, spec: _Spec, when: int) -> MergedPR:
    """Commit the PR's branch off `main` (kept as `refs/pull/N/head`, as on GitHub), then merge
    it: a merge commit by the reviewer, or a squash commit authored by the PR's author."""
    git.run("checkout", "--quiet", "--detach", DEFAULT_BRANCH)
    for index, (message, files) in enumerate(spec.commits):
        _write(git.path, files)
        git.run("add", "--all")
        git.commit(message, author=spec.author, committer=spec.author, when=when + 600 * index)
    head = git.rev("HEAD")
    git.run("update-ref", f"refs/pull/{spec.number}/head", head)
    git.run("checkout", "--quiet", DEFAULT_BRANCH)
    body = _body(spec)
    merged_at = when + 3000
    if spec.squash:
        git.run("merge", "--quiet", "--squash", head)
        message = f"{spec.title} (#{spec.number})\n\n{body}"
        git.commit(message, author=spec.author, committer=_GITHUB, when=merged_at)
    else:
        owner = REPO.partition("/")[0]
        message = f"Merge pull request #{spec.number} from {owner}/{spec.branch}"
        message = f"{message}\n\n{spec.title}\n\n{body}"
        git.run(
            "merge", "--quiet", "--no-ff", "--no-edit", "-m", message, head,
            author=_MERGER, committer=_GITHUB, when=merged_at,
        )  # fmt: skip
    merge_sha = git.rev("HEAD")
    changed = git.run("diff", "--name-only", "-z", f"{merge_sha}^1", merge_sha).split("\0")
    return MergedPR(
        repo=REPO,
        number=spec.number,
        title=spec.title,
        author=spec.author.login,
        url=f"https://github.com/{REPO}/pull/{spec.number}",
        merge_sha=merge_sha,
        head_sha=head,
        base_ref=DEFAULT_BRANCH,
        merged_at=float(merged_at),
        body=body,
        identity=spec.identity,
        labels=spec.labels,
        files=tuple(sorted(name for name in changed if name)),
    )


def _body(spec: _Spec) -> str:
    """The PR description and, for an agent, its session as trailers in the last paragraph."""
    identity = spec.identity
    if not identity.is_agent or identity.spec is None or identity.cost_usd is None:
        return spec.description
    paragraphs = [spec.description]
    trailers = [
        f"Agent-Session: {identity.session}",
        f"Agent-Name: {identity.name}",
        f"Agent-Model: {identity.model}",
        f"Agent-Role: {identity.role}",
    ]
    if spec.closes:
        # Not a trailer line: it would stop git from reading the paragraph as trailers.
        paragraphs.append(f"Closes #{identity.spec.rpartition('#')[2]}")
    else:
        trailers.append(f"Spec: {identity.spec}")
    trailers += [f"Agent-Tokens: {identity.tokens}", f"Agent-Cost-USD: {identity.cost_usd:.2f}"]
    return "\n\n".join([*paragraphs, "\n".join(trailers)])


def _write(root: Path, files: tuple[tuple[str, str], ...]) -> None:
    for name, text in files:
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, newline="\n")


class _Git:
    """Synchronous git in the demo repository: no global or system config, and the identities
    and dates given per call (the shas depend on both)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
        self._env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, LC_ALL="C")

    def run(
        self,
        *args: str,
        author: _Person = _MERGER,
        committer: _Person = _MERGER,
        when: int = _EPOCH,
    ) -> str:
        """Run git; a failure is a `RuntimeError` with git's stderr (the demo cannot go on)."""
        date = f"{when} +0000"
        env = self._env | {
            "GIT_AUTHOR_NAME": author.name,
            "GIT_AUTHOR_EMAIL": author.email,
            "GIT_AUTHOR_DATE": date,
            "GIT_COMMITTER_NAME": committer.name,
            "GIT_COMMITTER_EMAIL": committer.email,
            "GIT_COMMITTER_DATE": date,
        }
        # S603/S607: the program is git from PATH and every argument is built in this module.
        result = subprocess.run(  # noqa: S603
            ["git", *args],  # noqa: S607
            cwd=self.path,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            output = (result.stderr or result.stdout).strip()
            raise RuntimeError(f"git {args[0]} failed building the demo: {output}")
        return result.stdout

    def commit(self, message: str, *, author: _Person, committer: _Person, when: int) -> str:
        """Commit the index with this message, identity and date; return the new sha."""
        self.run(
            "commit", "--quiet", "--cleanup=whitespace", "-m", message,
            author=author, committer=committer, when=when,
        )  # fmt: skip
        return self.rev("HEAD")

    def rev(self, rev: str) -> str:
        return self.run("rev-parse", "--verify", rev).strip()


def merge_branch(path: Path, branch: str, when: float) -> str:
    """Merge `branch` into main as the demo's person would merge a revert PR; the new main sha."""
    git = _Git(path)
    git.run("checkout", "--quiet", "main", when=int(when))
    message = f"Merge branch '{branch}'"
    git.run("merge", "--quiet", "--no-ff", "-m", message, branch, when=int(when))
    return git.rev("main")
