-- The same schema as migrations/sqlite/0001_init.sql, in PostgreSQL types: times are BIGINT Unix
-- milliseconds, flags BOOLEAN, and JSON documents TEXT (the store never queries inside them, and
-- both stores decode rows with the same code).

-- Webhook deliveries, stored before the sender gets its 202 and processed afterwards.
CREATE TABLE inbox (
    id           BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source       TEXT    NOT NULL,
    delivery_id  TEXT    NOT NULL,
    event_type   TEXT    NOT NULL,
    body         BYTEA   NOT NULL,
    received_at  BIGINT  NOT NULL,
    status       TEXT    NOT NULL,
    detail       TEXT,
    processed_at BIGINT,
    UNIQUE (source, delivery_id)
);
CREATE INDEX inbox_by_status ON inbox (status, id);

-- One promotion of one artifact into one environment.
CREATE TABLE runs (
    id          TEXT    PRIMARY KEY,
    inbox_id    BIGINT  REFERENCES inbox (id),
    app         TEXT    NOT NULL,
    environment TEXT    NOT NULL,
    pipeline    TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    digest      TEXT,
    plan        TEXT    NOT NULL,
    error       TEXT,
    -- 'promotion' (from an event), 'follow-up' (next in the environment graph), 'rollback', 'manual'.
    origin      TEXT    NOT NULL DEFAULT 'promotion',
    -- Admitted runs may execute; at most one non-final admitted run per (app, environment).
    admitted    BOOLEAN NOT NULL DEFAULT FALSE,
    -- Admitted even while the environment is held (a rollback).
    bypass_hold BOOLEAN NOT NULL DEFAULT FALSE,
    concurrency TEXT    NOT NULL DEFAULT 'supersede',
    -- Follow-up runs of a succeeded run have been created.
    advanced    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    finished_at BIGINT
);
CREATE INDEX runs_by_created ON runs (created_at DESC, id DESC);
CREATE INDEX runs_by_app_env ON runs (app, environment, created_at DESC);
CREATE INDEX runs_by_state ON runs (state);
-- Covers the admission pass: queues are found and their heads picked without reading the rows.
CREATE INDEX runs_queued ON runs (admitted, state, app, environment, created_at, id, concurrency, bypass_hold);
CREATE INDEX runs_to_advance ON runs (state, advanced);
CREATE INDEX runs_by_digest ON runs (app, digest, state);
-- A follow-up promotion of one digest into one environment is created once, however many
-- environments it waited for (fan-in), and however many replicas advance the run at once.
CREATE UNIQUE INDEX runs_follow_up_once ON runs (app, environment, digest) WHERE origin = 'follow-up';
-- Re-processing a delivery after a crash, or by a second replica, must not start its
-- promotions twice.
CREATE UNIQUE INDEX runs_once_per_delivery ON runs (inbox_id, app, environment) WHERE inbox_id IS NOT NULL;

-- The nodes of a run's DAG.
CREATE TABLE steps (
    run_id       TEXT    NOT NULL REFERENCES runs (id),
    name         TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    position     BIGINT  NOT NULL,
    needs        TEXT    NOT NULL,
    config       TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    attempts     BIGINT  NOT NULL DEFAULT 0,
    not_before   BIGINT  NOT NULL DEFAULT 0,
    -- The executor (replica) running the step, and until when its lease holds unless renewed.
    lease_owner  TEXT,
    lease_until  BIGINT,
    outputs      TEXT,
    error        TEXT,
    -- Why an operator skipped it, or why its condition kept it from running.
    note         TEXT,
    condition    TEXT,
    max_attempts BIGINT,
    backoff_ms   BIGINT,
    timeout_ms   BIGINT,
    -- Event that wakes the step while it waits (e.g. approval:<run>:<step>).
    wait_key     TEXT,
    started_at   BIGINT,
    finished_at  BIGINT,
    PRIMARY KEY (run_id, name)
);
CREATE INDEX steps_by_wait_key ON steps (wait_key) WHERE wait_key IS NOT NULL;
CREATE INDEX steps_by_lease ON steps (state, lease_until);
-- The executor's claim query: ready or waiting steps whose time has come.
CREATE INDEX steps_claimable ON steps (state, not_before);

-- Change requests opened through the local forge (a pushed branch that gantry tracks).
CREATE TABLE change_requests (
    id          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    forge       TEXT    NOT NULL,
    repo        TEXT    NOT NULL,
    branch      TEXT    NOT NULL,
    base        TEXT    NOT NULL,
    head_commit TEXT    NOT NULL,
    title       TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    run_id      TEXT    NOT NULL REFERENCES runs (id),
    state       TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    UNIQUE (forge, repo, branch)
);
CREATE INDEX change_requests_by_run ON change_requests (run_id);

-- Environments (or one app in one) that no promotion may enter until released.
CREATE TABLE holds (
    environment TEXT    NOT NULL,
    app         TEXT    NOT NULL DEFAULT '',
    reason      TEXT    NOT NULL,
    digest      TEXT,
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (environment, app)
);
