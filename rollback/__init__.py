"""Rollback: revert planning and policy, the `Forge` (GitHub, local git), the `Notifier` (Slack,
console) and, later, the `Fixer`. Knows nothing of metrics or detection."""
