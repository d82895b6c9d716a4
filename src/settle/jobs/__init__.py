"""Jobs: work a state change leaves for the worker (a processor call, a refund), written in
the same transaction as the change (the transactional outbox) and run after its commit."""

from settle.jobs.model import (
    Job,
    JobQueue,
    JobStatus,
    JobView,
    NewJob,
    Reschedule,
    retry_delay,
)

__all__ = ["Job", "JobQueue", "JobStatus", "JobView", "NewJob", "Reschedule", "retry_delay"]
