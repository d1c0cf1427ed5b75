-- One row per job UID that outlives the custom resource: `procjob history` reads it after
-- `kubectl delete`. The store upserts it; a snapshot older than the stored one (lower last_seq)
-- never overwrites it, so a replayed upsert cannot move a job backwards.
CREATE TABLE jobs (
    uid              text        PRIMARY KEY,
    namespace        text        NOT NULL,
    name             text        NOT NULL,
    spec             jsonb       NOT NULL DEFAULT '{}'::jsonb,
    state            text        NOT NULL,
    reason           text        NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL,
    started_at       timestamptz,
    finished_at      timestamptz,
    duration_seconds double precision
        GENERATED ALWAYS AS (extract(epoch FROM finished_at - started_at)::double precision) STORED,
    attempts         integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    deleted_at       timestamptz,
    last_seq         bigint      NOT NULL DEFAULT 0
);

COMMENT ON TABLE jobs IS 'One row per ProcessingJob UID; kept after the custom resource is deleted.';
COMMENT ON COLUMN jobs.last_seq IS 'The audit seq this snapshot reflects; only a snapshot as new or newer replaces it.';

-- The latest job of a name (a name can be reused after deletion).
CREATE INDEX jobs_by_name ON jobs (namespace, name, created_at DESC);
