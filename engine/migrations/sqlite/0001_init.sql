-- Webhook deliveries, stored before the sender gets its 202 and processed afterwards.
CREATE TABLE inbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    source       TEXT    NOT NULL,
    delivery_id  TEXT    NOT NULL,
    event_type   TEXT    NOT NULL,
    body         BLOB    NOT NULL,
    received_at  INTEGER NOT NULL,
    status       TEXT    NOT NULL,
    detail       TEXT,
    processed_at INTEGER,
    UNIQUE (source, delivery_id)
);
CREATE INDEX inbox_by_status ON inbox (status, id);

-- One promotion of one artifact into one environment.
CREATE TABLE runs (
    id          TEXT    PRIMARY KEY,
    inbox_id    INTEGER REFERENCES inbox (id),
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
    admitted    INTEGER NOT NULL DEFAULT 0,
    -- Admitted even while the environment is held (a rollback).
    bypass_hold INTEGER NOT NULL DEFAULT 0,
    concurrency TEXT    NOT NULL DEFAULT 'supersede',
    -- Follow-up runs of a succeeded run have been created.
    advanced    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    finished_at INTEGER
);
CREATE INDEX runs_by_created ON runs (created_at DESC, id DESC);
CREATE INDEX runs_by_app_env ON runs (app, environment, created_at DESC);
CREATE INDEX runs_by_state ON runs (state);
CREATE INDEX runs_queued ON runs (admitted, state, app, environment, created_at);
CREATE INDEX runs_to_advance ON runs (state, advanced);
CREATE INDEX runs_by_digest ON runs (app, digest, state);
-- A follow-up promotion of one digest into one environment is created once, however many
-- environments it waited for (fan-in).
CREATE UNIQUE INDEX runs_follow_up_once ON runs (app, environment, digest) WHERE origin = 'follow-up';
-- Re-processing a delivery after a crash must not start its promotions twice.
CREATE UNIQUE INDEX runs_once_per_delivery ON runs (inbox_id, app, environment) WHERE inbox_id IS NOT NULL;

-- The nodes of a run's DAG.
CREATE TABLE steps (
    run_id      TEXT    NOT NULL REFERENCES runs (id),
    name        TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    position    INTEGER NOT NULL,
    needs       TEXT    NOT NULL,
    config      TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    not_before  INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until INTEGER,
    outputs     TEXT,
    error       TEXT,
    -- Why an operator skipped it, or why its condition kept it from running.
    note        TEXT,
    condition   TEXT,
    max_attempts INTEGER,
    backoff_ms  INTEGER,
    timeout_ms  INTEGER,
    -- Event that wakes the step while it waits (e.g. approval:<run>:<step>).
    wait_key    TEXT,
    started_at  INTEGER,
    finished_at INTEGER,
    PRIMARY KEY (run_id, name)
);
CREATE INDEX steps_by_wait_key ON steps (wait_key) WHERE wait_key IS NOT NULL;
CREATE INDEX steps_by_lease ON steps (state, lease_until);
-- The executor's claim query: ready or waiting steps whose time has come.
CREATE INDEX steps_claimable ON steps (state, not_before);

-- Change requests opened through the local forge (a pushed branch that gantry tracks).
CREATE TABLE change_requests (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    forge       TEXT    NOT NULL,
    repo        TEXT    NOT NULL,
    branch      TEXT    NOT NULL,
    base        TEXT    NOT NULL,
    head_commit TEXT    NOT NULL,
    title       TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    run_id      TEXT    NOT NULL REFERENCES runs (id),
    state       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (forge, repo, branch)
);
CREATE INDEX change_requests_by_run ON change_requests (run_id);

-- Environments (or one app in one) that no promotion may enter until released.
CREATE TABLE holds (
    environment TEXT    NOT NULL,
    app         TEXT    NOT NULL DEFAULT '',
    reason      TEXT    NOT NULL,
    digest      TEXT,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (environment, app)
);
