-- The same table as migrations/sqlite/0002_ref_events.sql, in PostgreSQL types.
CREATE TABLE ref_events (
    id          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    forge       TEXT    NOT NULL,
    repo        TEXT    NOT NULL,
    git_ref     TEXT    NOT NULL,
    inbox_id    BIGINT  NOT NULL REFERENCES inbox (id),
    delivery    TEXT    NOT NULL,
    sha         TEXT,
    before_sha  TEXT,
    deleted     BOOLEAN NOT NULL,
    event_time  BIGINT,
    recorded_at BIGINT  NOT NULL,
    UNIQUE (forge, repo, git_ref, inbox_id)
);
CREATE INDEX ref_events_by_ref ON ref_events (forge, repo, git_ref, id);
