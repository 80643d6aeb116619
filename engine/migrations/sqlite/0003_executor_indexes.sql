-- Indexes for the executor's hot queries, so that their cost does not grow with the number of
-- queued runs or ready steps.

-- Covers the admission pass: queues are found and their heads picked without reading the rows.
DROP INDEX runs_queued;
CREATE INDEX runs_queued ON runs (admitted, state, app, environment, created_at, id, concurrency, bypass_hold);

-- The claim query and the executor's next wake-up: claimable steps in the order they become
-- due, with their run at hand, so that a claim reads the first due step instead of sorting
-- every ready one.
DROP INDEX steps_claimable;
CREATE INDEX steps_claimable ON steps (not_before, run_id) WHERE state IN ('ready', 'waiting');
