-- Tokens and cost of every model call the Fixer made, per incident: caps per incident and per day.
CREATE TABLE llm_usage (
    id             VARCHAR PRIMARY KEY,   -- "<incident>:<n>", n counting that incident's calls
    incident_id    VARCHAR NOT NULL,
    model          VARCHAR NOT NULL,
    input_tokens   BIGINT NOT NULL,
    output_tokens  BIGINT NOT NULL,
    cost_usd       DOUBLE NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL
);
