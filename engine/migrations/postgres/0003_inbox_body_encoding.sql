-- The same column as in SQLite, so that both stores decode inbox rows alike. PostgreSQL keeps
-- bodies as received (NULL): TOAST compresses large values already.
ALTER TABLE inbox ADD COLUMN body_encoding TEXT;
