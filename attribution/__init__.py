"""Attribution: the DuckDB store (single writer), change sets, agent-session identity and suspect
ranking. Knows nothing of HTTP or Prometheus."""
