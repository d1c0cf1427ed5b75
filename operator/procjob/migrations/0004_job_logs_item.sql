-- The item of a fanned-out stage (forEach) in the log archive: each item runs its own chain of
-- attempts, so item 0's attempt 1 and item 5's attempt 1 are two attempts, two pods, two logs. Keyed
-- by (job UID, stage, attempt, container) alone they collided: the first item's logs were stored and
-- every other item's attempt counted as archived, so their pods were deleted with their logs unread.
--
-- `item` is the item's index (the pod's procjob.dev/item label), NULL for a stage without forEach:
-- rows archived before this migration keep NULL and stay valid as they are.
--
-- One row per (job UID, stage, item, attempt, container), a NULL item counting as one value
-- (NULLS NOT DISTINCT, PostgreSQL 15): a stage without items still has one row per attempt and
-- container, and the first archive of an attempt still wins (INSERT ... ON CONFLICT ON CONSTRAINT
-- job_logs_attempt_key DO NOTHING). This unique constraint replaces the primary key, which cannot
-- hold a nullable column; its index serves the same lookups (by job UID, then stage). A platform
-- that replicates the audit database logically sets REPLICA IDENTITY FULL on job_logs (rows are
-- deleted when their job's row is).
ALTER TABLE job_logs ADD COLUMN item integer CHECK (item >= 0);

ALTER TABLE job_logs DROP CONSTRAINT job_logs_pkey;

ALTER TABLE job_logs ADD CONSTRAINT job_logs_attempt_key
    UNIQUE NULLS NOT DISTINCT (job_uid, stage, item, attempt, container);

COMMENT ON COLUMN job_logs.item IS
    'The item of a fanned-out stage (forEach), from 0; NULL for a stage without items.';
