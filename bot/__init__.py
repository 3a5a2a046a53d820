"""imagebot: the Slack chat-ops service that creates and schedules server images."""

__version__ = "0.1.0"
