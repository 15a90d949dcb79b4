"""Observer: SLI definitions, metrics sources, and the pure detectors
that turn series into verdicts.

Knows nothing of GitHub, Slack or the store's tables.
"""
