"""Prometheus metrics, one registry per runtime (no module-level registry or globals)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from bot.imaging import jobs
from bot.imaging.jobs import Job

PHASE_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400)


class Metrics:
    """The counters the engine, notifier and cloud transport feed."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.transitions = Counter("imagebot_job_transitions", "Job state changes, by new state",
                                   ["state"], registry=self.registry)
        self.failures = Counter("imagebot_job_failures", "Failed jobs, by cause", ["cause"],
                                registry=self.registry)
        self.jobs = Gauge("imagebot_jobs_in_flight", "Jobs the engine is working on, by state",
                          ["state"], registry=self.registry)
        self.phase_seconds = Histogram("imagebot_phase_seconds",
                                       "Duration of each imaging phase", ["phase"],
                                       buckets=PHASE_BUCKETS, registry=self.registry)
        self.cloud_requests = Counter("imagebot_cloud_requests", "HTTP requests to the cloud",
                                      ["method", "status"], registry=self.registry)
        self.slack_calls = Counter("imagebot_slack_calls", "Slack Web API calls",
                                   ["method", "outcome"], registry=self.registry)
        self.slack_429s = Counter("imagebot_slack_rate_limited",
                                  "429 answers from Slack, those slack_sdk retried included",
                                  ["method"], registry=self.registry)
        self.outbox_depth = Gauge("imagebot_outbox_depth", "Slack messages waiting to be sent",
                                  registry=self.registry)
        self.slack_post_limit = Gauge(
            "imagebot_slack_workspace_post_limit",
            "Posts per second the bot keeps to across the workspace, learnt from 429s (0: none)",
            registry=self.registry)
        self.slack_calmed = Gauge("imagebot_slack_calmed_channels",
                                  "Channels posting without bursts after a refused burst",
                                  registry=self.registry)

    def watch_slack_pacing(self, limit: Callable[[], float], calmed: Callable[[], int]) -> None:
        """Read the pacer's learnt state whenever the metrics are rendered."""
        self.slack_post_limit.set_function(limit)
        self.slack_calmed.set_function(calmed)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)

    def job_changed(self, before: Job, after: Job) -> None:
        """Count a committed change and the phase it closed."""
        if after.state == before.state:
            return
        self.transitions.labels(after.state).inc()
        if after.state == jobs.FAILED:
            self.failures.labels(after.error_code or "unknown").inc()
        spans: dict[str, tuple[datetime | None, datetime | None]] = {
            "snapshot": (after.snapshot_started_at, after.snapshot_ended_at),
            "upload": (after.snapshot_ended_at, after.finished_at),
            "total": (after.submitted_at, after.finished_at),
        }
        closed = {"snapshot": before.snapshot_ended_at is None and after.snapshot_ended_at,
                  "upload": before.finished_at is None and after.finished_at,
                  "total": before.finished_at is None and after.finished_at}
        for phase, (start, end) in spans.items():
            if closed[phase] and start and end:
                self.phase_seconds.labels(phase).observe((end - start).total_seconds())

    def in_flight(self, current: list[Job]) -> None:
        """Set the in-flight gauge from the engine's latest view."""
        counts = {state: 0 for state in sorted(jobs.IN_FLIGHT)}
        for job in current:
            if job.state in counts:
                counts[job.state] += 1
        for state, count in counts.items():
            self.jobs.labels(state).set(count)


class CountingTransport(httpx.AsyncBaseTransport):
    """Wraps the cloud transport to count requests by method and status (or error)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await self.inner.handle_async_request(request)
        except httpx.TransportError as exc:
            self.metrics.cloud_requests.labels(request.method, type(exc).__name__).inc()
            raise
        self.metrics.cloud_requests.labels(request.method, str(response.status_code)).inc()
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()
