-- Where the inbox journal has been read up to. A webhook delivery is appended to the journal
-- file (`<database>-inbox.<generation>`) before it is answered, and moves into `inbox` in the
-- transaction that advances this position past it.
CREATE TABLE inbox_journal (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL,
    position   INTEGER NOT NULL
);
INSERT INTO inbox_journal (id, generation, position) VALUES (1, 0, 0);
