-- The archived tail of each finished attempt's container logs, written by the operator's log
-- archive before podGC deletes the pod (`kubectl pj logs JOB --stage S --attempt N` reads it once
-- the pod is gone).
--
-- One row per (job UID, stage, attempt, container). The first archive of an attempt wins
-- (INSERT ... ON CONFLICT DO NOTHING): a repeat after a crash changes nothing. `content` is bytea,
-- the log's last bytes as the API served them (any bytes, NUL included); at most the operator's
-- --log-archive-max-bytes per container. A row with `error` set says why no log could be read
-- (the container never ran, the node no longer has it) and has no content.
CREATE TABLE job_logs (
    job_uid        text        NOT NULL,
    stage          text        NOT NULL,
    attempt        integer     NOT NULL CHECK (attempt >= 1),
    container      text        NOT NULL,
    namespace      text        NOT NULL,
    name           text        NOT NULL,
    pod_name       text        NOT NULL,
    pod_uid        text        NOT NULL,
    content        bytea       NOT NULL DEFAULT ''::bytea,
    size           bigint      GENERATED ALWAYS AS (octet_length(content)) STORED,
    received_bytes bigint      NOT NULL DEFAULT 0 CHECK (received_bytes >= 0),
    truncated      boolean     NOT NULL DEFAULT false,
    complete       boolean     NOT NULL DEFAULT true,
    error          text,
    finished_at    timestamptz,
    archived_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_uid, stage, attempt, container)
);

COMMENT ON TABLE job_logs IS
    'The last bytes of each finished attempt''s container logs; kept after the pod and the job are deleted.';
COMMENT ON COLUMN job_logs.received_bytes IS 'Bytes the API server sent; content holds the last of them.';
COMMENT ON COLUMN job_logs.truncated IS 'Earlier log lines exist that content does not hold.';
COMMENT ON COLUMN job_logs.complete IS 'False when the read was cut by its time or transfer bound before the end.';

-- A job's logs by name (the latest job of a name, as history picks it).
CREATE INDEX job_logs_by_name ON job_logs (namespace, name, archived_at);

-- Archived logs follow the job's row: whoever deletes rows of `jobs` (a retention job of the
-- platform's) deletes that job's logs with them.
CREATE FUNCTION job_logs_follow_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM job_logs WHERE job_uid = OLD.uid;
    RETURN OLD;
END;
$$;

CREATE TRIGGER job_logs_follow_jobs AFTER DELETE ON jobs
    FOR EACH ROW EXECUTE FUNCTION job_logs_follow_jobs();
