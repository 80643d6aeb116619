-- Per ref (forge, repository, branch or tag), the events intake accepted as that ref's newest,
-- newest last (by id). An event older than the newest is refused and not recorded here, so
-- it never starts a run that would move an environment back. Pruned to the newest few per ref.
CREATE TABLE ref_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    forge       TEXT    NOT NULL,
    repo        TEXT    NOT NULL,
    git_ref     TEXT    NOT NULL,
    inbox_id    INTEGER NOT NULL REFERENCES inbox (id),
    delivery    TEXT    NOT NULL,
    sha         TEXT,
    before_sha  TEXT,
    deleted     INTEGER NOT NULL,
    event_time  INTEGER,
    recorded_at INTEGER NOT NULL,
    UNIQUE (forge, repo, git_ref, inbox_id)
);
CREATE INDEX ref_events_by_ref ON ref_events (forge, repo, git_ref, id);
