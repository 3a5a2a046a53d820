"""The one exception of the grammar: `ParseError`, whose `str()` is fit to show a user."""

from __future__ import annotations

from commands.text import slack_escape


class ParseError(ValueError):
    """The text is not a valid `/image` command.

    `message` says what is wrong (with a "did you mean ...?" when there is a close match) and
    `usage` is the usage line(s) of the command concerned, one `/image ...` form per line.
    """

    def __init__(self, message: str, usage: str) -> None:
        self.message = message
        self.usage = usage
        super().__init__(message, usage)

    def __str__(self) -> str:
        # User text inside `message` is escaped where it is quoted; what is left of < and > are
        # placeholders like <server>, which Slack must not read as links.
        message = self.message.replace("<", "&lt;").replace(">", "&gt;")
        lines = [slack_escape(line) for line in self.usage.splitlines() if line]
        if not lines:
            return message
        if len(lines) == 1:
            return f"{message}\nUsage: `{lines[0]}`"
        return message + "\nUsage:\n" + "\n".join(f"• `{line}`" for line in lines)

    def user_message(self) -> str:
        """Text fit to show a Slack user (the same as `str()`)."""
        return str(self)
