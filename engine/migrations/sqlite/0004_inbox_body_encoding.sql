-- How a delivery's body is kept: NULL as received, 'lz4' packed (an LZ4 block after its
-- unpacked length as a little-endian u32). Webhook bodies are JSON that packs to a quarter or
-- a third, and the inbox's cost under a burst is mostly the bytes written to the WAL and
-- copied again at checkpoints.
ALTER TABLE inbox ADD COLUMN body_encoding TEXT;
