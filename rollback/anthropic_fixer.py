"""`AnthropicFixer`: asks a model, through the anthropic SDK, for a structured fix proposal.

It owns the Anthropic edge: one `AsyncAnthropic` client built with an explicit key, `base_url`
and timeout (never ambient env), the prompt, the JSON schema of the answer (structured output via
`output_config.format`), the parsing of that answer into a `FixProposal`, the token usage and its
cost, and the one retry policy for the Messages API. The SDK's own retries are off
(`max_retries=0`) because it honours any `retry-after`, an hour included; `observer.retry`'s
`retry_inline` retries instead, backing off with `retry_delay` from `BACKOFF_FIRST` to
`BACKOFF_CAP`::

    429 / 529 overloaded / 5xx / timeout / connection  -> back off (retry-after if <= cap), retry
    retry-after beyond the cap, or budget spent         -> FixerUnavailable (the loop retries later)
    401, 400, other 4xx                                 -> FixerError (the fix falls back)
    an answer that is not the JSON asked for            -> FixAnswer without proposal, usage kept

The key never appears in a message.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anthropic
from anthropic import AsyncAnthropic

from observer.retry import Sleep, retry_delay, retry_inline
from rollback.fixer import FixAnswer, FixContext, FixerError, FixerUnavailable, FixProposal, Usage

BACKOFF_FIRST = 1.0
BACKOFF_CAP = 16.0
MAX_DIFF_CHARS = 60_000
# What is retried inline, and once the budget is spent becomes FixerUnavailable.
_TRANSIENT = (
    anthropic.RateLimitError,
    anthropic.InternalServerError,
    anthropic.APITimeoutError,
    anthropic.APIConnectionError,
)

SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {
        "diagnosis": {"type": "string"},
        "hypothesis": {"type": "string"},
        "plan": {"type": "array", "items": {"type": "string"}},
        "patch": {"type": "string"},
        "tests": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["diagnosis", "hypothesis", "plan", "patch", "tests"],
    "additionalProperties": False,
}

SYSTEM = (
    "You are Rearguard's fixer. A pull request was reverted because its deploy regressed a "
    "service. From its diff, the spec it was written against and the evidence, answer with a "
    "diagnosis, a hypothesis, a short plan, a patch and the tests that would have caught the "
    "regression. The patch is a unified diff (---/+++ headers with a/ and b/ prefixes) against "
    "the files as the pull request left them. It may change only the pull request's own files "
    "and test files; never CI workflows, migrations, dependency manifests or anything else. "
    "Put the tests in the patch too. If you cannot write a safe patch, answer with an empty "
    "patch string."
)


def _prompt(context: FixContext) -> str:
    diff = context.diff
    if len(diff) > MAX_DIFF_CHARS:
        diff = diff[:MAX_DIFF_CHARS] + "\n[diff truncated]"
    evidence = "\n".join(f"- {line}" for line in context.evidence) or "- none"
    return (
        f"Service: {context.service}\nRepository: {context.repo}\n"
        f"Reverted PR: #{context.pr_number} {context.pr_title} ({context.pr_url})\n"
        f"Spec: {context.spec or 'none on record'}\n\nPR description:\n{context.pr_body[:4000]}\n\n"
        f"Evidence:\n{evidence}\n\nFiles: {', '.join(context.files)}\n\nDiff:\n{diff}\n"
    )


class AnthropicFixer:
    """A `Fixer` over the Messages API; prices are USD per million input and output tokens."""

    def __init__(
        self,
        api_key: str,
        model: str,
        *,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_tokens: int = 4096,
        max_attempts: int = 3,
        max_retry_after: float = 60.0,
        prices: tuple[float, float] = (3.0, 15.0),
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not api_key:
            raise ValueError("the Anthropic API key is empty")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._key = api_key
        self._model = model
        self._max_tokens = max_tokens
        self._max_attempts = max_attempts
        self._max_retry_after = max_retry_after
        self._prices = prices
        self._sleep = sleep
        self._client = AsyncAnthropic(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0
        )

    async def aclose(self) -> None:
        """Close the SDK's connection pool."""
        await self._client.close()

    async def propose(self, context: FixContext) -> FixAnswer:
        """One structured request (retried on transient failures); the parsed answer."""
        text, usage = await self.ask(SYSTEM, _prompt(context), SCHEMA)
        try:
            return FixAnswer(_proposal(json.loads(text)), usage)
        except (ValueError, TypeError, KeyError) as exc:
            problem = f"the model's answer was not the JSON asked for ({type(exc).__name__})"
            return FixAnswer(None, usage, problem)

    async def ask(self, system: str, prompt: str, schema: dict[str, object]) -> tuple[str, Usage]:
        """One request for JSON matching `schema` (retried on transient failures): the answer's
        text, unparsed (the caller validates it), and the tokens and cost it took. The lessons
        writer (`rollback.lessons_model`) asks through here too."""
        message = await self._create(system, prompt, schema)
        usage = Usage(
            model=self._model,
            input_tokens=message.usage.input_tokens,
            output_tokens=message.usage.output_tokens,
            cost_usd=(
                message.usage.input_tokens * self._prices[0]
                + message.usage.output_tokens * self._prices[1]
            )
            / 1_000_000,
        )
        return "".join(block.text for block in message.content if block.type == "text"), usage

    async def _create(
        self, system: str, prompt: str, schema: dict[str, object]
    ) -> anthropic.types.Message:
        async def create() -> anthropic.types.Message:
            return await self._client.messages.create(
                model=self._model,
                max_tokens=self._max_tokens,
                system=system,
                messages=[{"role": "user", "content": prompt}],
                output_config={"format": {"type": "json_schema", "schema": schema}},
            )

        try:
            return await retry_inline(
                create, self._classify, attempts=self._max_attempts, sleep=self._sleep
            )
        except _TRANSIENT as exc:
            raise FixerUnavailable(
                self._redact(f"Anthropic: {_describe(exc)} after {self._max_attempts} attempts")
            ) from exc
        except anthropic.APIStatusError as exc:
            raise FixerError(
                self._redact(f"Anthropic refused the request: HTTP {exc.status_code}")
            ) from exc

    def _classify(self, exc: Exception, attempt: int) -> float | None:
        """The wait before asking again (the server's retry-after, else the backoff); None for a
        refusal that retrying will not change."""
        backoff = retry_delay(attempt, BACKOFF_FIRST, BACKOFF_CAP)
        if isinstance(exc, anthropic.RateLimitError | anthropic.InternalServerError):
            # InternalServerError covers 5xx and 529 overloaded (OverloadedError).
            asked = _retry_after(exc.response.headers.get("retry-after"))
            if asked is not None and asked > self._max_retry_after:
                raise FixerUnavailable(
                    self._redact(f"Anthropic asks to wait {asked:.0f}s: retrying later")
                ) from exc
            return asked if asked is not None else backoff
        if isinstance(exc, anthropic.APITimeoutError | anthropic.APIConnectionError):
            return backoff
        return None

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***")


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _describe(exc: Exception | None) -> str:
    if isinstance(exc, anthropic.APIStatusError):
        return f"HTTP {exc.status_code}"
    if isinstance(exc, anthropic.APITimeoutError):
        return "timed out"
    return f"connection failed ({type(exc).__name__})"


def _proposal(data: Any) -> FixProposal:
    """The schema's object as a `FixProposal`; anything else raises ValueError."""
    if not isinstance(data, dict):
        raise TypeError("not an object")
    strings = [data["diagnosis"], data["hypothesis"], data["patch"]]
    lists = [data["plan"], data["tests"]]
    if not all(isinstance(s, str) for s in strings) or not all(
        isinstance(items, list) and all(isinstance(i, str) for i in items) for items in lists
    ):
        raise TypeError("fields of the wrong type")
    patch = data["patch"].strip()
    return FixProposal(
        diagnosis=data["diagnosis"],
        hypothesis=data["hypothesis"],
        plan=tuple(data["plan"]),
        patch=patch + "\n" if patch else None,
        tests=tuple(data["tests"]),
    )
