-- The audit of record: one row per transition of a ProcessingJob, numbered per job.
--
-- (job_uid, seq) is the primary key so that the relay can insert a batch again after a crash
-- between the insert and its status update: INSERT ... ON CONFLICT (job_uid, seq) DO NOTHING
-- absorbs the repeat. The job UID is text, not uuid: Kubernetes defines UIDs as opaque strings.
CREATE TABLE audit_events (
    job_uid     text        NOT NULL,
    seq         bigint      NOT NULL CHECK (seq >= 1),
    namespace   text        NOT NULL,
    name        text        NOT NULL,
    stage       text,
    attempt     integer     CHECK (attempt >= 1),
    event_type  text        NOT NULL,
    reason      text        NOT NULL DEFAULT '',
    message     text        NOT NULL DEFAULT '',
    pod_name    text,
    exit_code   integer,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    detail      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (job_uid, seq)
);

COMMENT ON TABLE audit_events IS
    'One row per ProcessingJob transition; seq is gap-free per job_uid. Written by the procjob relay.';
COMMENT ON COLUMN audit_events.occurred_at IS 'When the operator observed the transition.';
COMMENT ON COLUMN audit_events.recorded_at IS 'When PostgreSQL received it (later during an outage).';

-- History of a job by name, across the jobs that have carried that name, in time order.
-- (Lookups by job_uid ordered by seq use the primary key.)
CREATE INDEX audit_events_by_name ON audit_events (namespace, name, occurred_at, seq);
-- Time-range queries and retention.
CREATE INDEX audit_events_by_time ON audit_events (occurred_at);
