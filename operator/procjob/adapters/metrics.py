"""All of procjob's Prometheus metrics, in one module.

Naming: prefix `procjob_`, counters end in `_total`, durations in `_seconds`. Label values are
bounded enums — outcome (Succeeded, Failed, Cancelled), reason (the condition / failure reasons in
procjob.models), state (Queued, Running, BackoffWaiting, Suspended), verb (HTTP method), namespace
only where the number of namespaces is the operator's own configuration (queue depth) — never a
job name or UID.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """One registry per operator process (tests make their own)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._jobs(self.registry)
        self._controller(self.registry)
        self._audit(self.registry)
        self._queue(self.registry)
        self._isolation(self.registry)
        self._logs(self.registry)
        self._leadership(self.registry)

    def _jobs(self, r: CollectorRegistry) -> None:
        """Jobs, attempts and retries."""
        self.jobs_finished = Counter(
            "procjob_jobs_finished_total", "Jobs that ended, by outcome and reason.", ["outcome", "reason"], registry=r
        )
        self.jobs_active = Gauge("procjob_jobs_active", "Jobs not finished, by state.", ["state"], registry=r)
        self.attempts_started = Counter("procjob_attempts_started_total", "Worker pods started.", registry=r)
        self.attempts_failed = Counter(
            "procjob_attempts_failed_total", "Failed attempts by failure reason.", ["reason"], registry=r
        )
        self.retries = Counter(
            "procjob_retries_total", "Retries scheduled, by action (Retry charged, Ignore not).", ["action"], registry=r
        )
        self.stage_duration = Histogram(
            "procjob_stage_duration_seconds",
            "Stage run time, first attempt to end.",
            ["outcome"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.job_duration = Histogram(
            "procjob_job_duration_seconds",
            "Job run time, start to end.",
            ["outcome"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )

    def _controller(self, r: CollectorRegistry) -> None:
        """The reconcile loop, the work queue, API requests and Events."""
        self.reconcile_duration = Histogram(
            "procjob_reconcile_duration_seconds", "Time of one reconcile.", buckets=FAST_BUCKETS, registry=r
        )
        self.reconcile_errors = Counter(
            "procjob_reconcile_errors_total", "Reconciles that raised, by error kind.", ["kind"], registry=r
        )
        self.workqueue_depth = Gauge("procjob_workqueue_depth", "Job keys waiting for a worker.", registry=r)
        self.workqueue_delayed = Gauge("procjob_workqueue_delayed", "Job keys waiting for a timer.", registry=r)
        self.api_requests = Counter(
            "procjob_api_requests_total", "Kubernetes API requests made, by verb.", ["verb"], registry=r
        )
        self.events_posted = Counter("procjob_events_posted_total", "Kubernetes Events posted.", registry=r)
        self.pod_events_ignored = Counter(
            "procjob_pod_events_ignored_total",
            "Pod watch events for pods that count for no job, by reason: unlabelled (the watch's label"
            " selector should keep these at 0) or not-ours (labelled, not controlled by that job).",
            ["reason"],
            registry=r,
        )
        self.orphan_pods_deleted = Counter(
            "procjob_orphan_pods_deleted_total",
            "Pods deleted because their job no longer exists (garbage collection had missed them).",
            registry=r,
        )
        self.events_dropped = Counter(
            "procjob_events_dropped_total", "Kubernetes Events that could not be posted (a lossy mirror).", registry=r
        )

    def _audit(self, r: CollectorRegistry) -> None:
        """The audit relay and PostgreSQL."""
        self.audit_backlog = Gauge(
            "procjob_audit_backlog", "Audit records in status outboxes not yet confirmed by PostgreSQL.", registry=r
        )
        self.audit_inserted = Counter("procjob_audit_records_total", "Audit records inserted (new rows).", registry=r)
        self.audit_errors = Counter("procjob_audit_errors_total", "Failed audit flushes.", registry=r)
        self.audit_lag = Histogram(
            "procjob_audit_lag_seconds",
            "Time from a transition to its row in PostgreSQL.",
            buckets=(*FAST_BUCKETS, 30, 60, 300),
            registry=r,
        )
        self.audit_up = Gauge("procjob_audit_up", "1 when PostgreSQL accepts audit writes.", registry=r)

    def _queue(self, r: CollectorRegistry) -> None:
        """Queue admission."""
        self.queue_depth = Gauge("procjob_queue_depth", "Queued jobs, by namespace.", ["namespace"], registry=r)
        self.queue_wait = Histogram(
            "procjob_queue_wait_seconds", "Time jobs spent queued.", buckets=DURATION_BUCKETS, registry=r
        )
        self.admissions = Counter("procjob_admissions_total", "Jobs admitted from the queue.", registry=r)

    def _isolation(self, r: CollectorRegistry) -> None:
        """One job's audit trouble stays that job's; no loop dies silently."""
        self.audit_quarantined = Gauge(
            "procjob_audit_quarantined_jobs",
            "Jobs whose audit records PostgreSQL refused: kept pending, retried alone with a long backoff.",
            registry=r,
        )
        self.audit_quarantines = Counter(
            "procjob_audit_quarantines_total", "Times a job's audit records were put in quarantine.", registry=r
        )
        self.loop_errors = Counter(
            "procjob_loop_errors_total",
            "Unexpected exceptions a long-lived loop caught and survived, by loop (a fixed name).",
            ["loop"],
            registry=r,
        )
        self.loop_restarts = Counter(
            "procjob_loop_restarts_total",
            "Long-lived loops restarted by their supervisor after they raised, by loop (a fixed name).",
            ["loop"],
            registry=r,
        )
        self.loop_up = Gauge(
            "procjob_loop_up", "1 while a supervised loop runs, 0 while it waits to restart.", ["loop"], registry=r
        )

    def _logs(self, r: CollectorRegistry) -> None:
        """The log archive (controller.logarchive)."""
        self.log_archived = Counter(
            "procjob_log_archived_total", "Container logs of finished attempts archived.", registry=r
        )
        self.log_archive_bytes = Counter(
            "procjob_log_archive_bytes_total", "Bytes of container logs archived.", registry=r
        )
        self.log_archive_failures = Counter(
            "procjob_log_archive_failures_total",
            "Log archive failures by reason: unavailable (the API cannot serve the log; recorded as such), "
            "error (a read or write failed; retried), abandoned (not archived in time; podGC went ahead).",
            ["reason"],
            registry=r,
        )
        self.log_archive_pending = Gauge(
            "procjob_log_archive_pending", "Finished attempts whose logs wait to be archived.", registry=r
        )

    def _leadership(self, r: CollectorRegistry) -> None:
        """Leader election (controller.leadership). A replica that stops leading exits at once
        (client-go's rule), so a failover shows on the new leader: `to="leader"`."""
        self.leader = Gauge(
            "procjob_leader", "1 while this replica is the one that writes (leads), 0 while it stands by.", registry=r
        )
        self.leadership_transitions = Counter(
            "procjob_leadership_transitions_total",
            "This replica's leadership changes, by the role entered: leader (took the Lease) or standby "
            "(stopped leading: lost or released the Lease; the process then exits).",
            ["to"],
            registry=r,
        )
        self.leader_renew_failures = Counter(
            "procjob_leader_renew_failures_total",
            "Renewals of the held Lease that failed; without one for the renew deadline the leader stops.",
            registry=r,
        )
