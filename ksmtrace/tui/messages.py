"""Messages the feed worker posts to the app (from its own thread)."""

from __future__ import annotations

from textual.message import Message

from ksmtrace.top.model import TopSnapshot


class SnapshotReady(Message):
    """A new snapshot to show; a newer one waiting in the queue replaces it unseen."""

    def __init__(self, snapshot: TopSnapshot) -> None:
        super().__init__()
        self.snapshot = snapshot

    def can_replace(self, message: Message) -> bool:
        """Only the newest snapshot matters: drop this one if another follows."""
        return isinstance(message, SnapshotReady)


class WorkerFailed(Message):
    """The worker ended with an error (the source broke); the app shows it and exits."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error
