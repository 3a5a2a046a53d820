"""Help text (Slack mrkdwn) and the README reference (Markdown), both generated from `TABLE`."""

from __future__ import annotations

from commands.grammar import BY_NAME, PREFIX, TABLE, Spec
from commands.text import slack_escape


def _overview() -> str:
    lines = [f"*`{PREFIX}` commands*"]
    for spec in TABLE:  # each line says what the form on it does
        lines += [f"• `{usage}` — {summary}" for usage, summary in spec.described_forms]
    lines.append(f"`{PREFIX} help <command>` shows the details and examples of one command.")
    return "\n".join(lines)


def _one(spec: Spec) -> str:
    lines = [f"*`{PREFIX} {spec.name}`* — {spec.summary}", "Usage:"]
    lines += [f"• `{usage}`" for usage in spec.usage_lines]
    lines.append(spec.details)
    if spec.options:
        lines.append("Options:")
        lines += [f"• `{_option_synopsis(opt.flag, opt.metavar)}` — {opt.help}"
                  for opt in spec.options]
    lines.append("Examples:")
    lines += [f"• `{PREFIX} {example}`" for example in spec.examples]
    return "\n".join(lines)


def _option_synopsis(flag: str, metavar: str | None) -> str:
    return flag if metavar is None else f"{flag} {metavar}"


def help_text(topic: str | None = None) -> str:
    """The overview of all commands (topic None), or one command's usage, details and examples.

    An unknown topic gets the overview, headed by a note that there is no such command.
    """
    if topic is None or not topic.strip():
        return slack_escape(_overview())
    spec = BY_NAME.get(topic.strip().lower())
    if spec is None:
        return slack_escape(f"There is no command `{topic.strip()[:40]}`.\n" + _overview())
    return slack_escape(_one(spec))


def reference_markdown() -> str:
    """The README command reference (the text between the `commands:` markers)."""
    out: list[str] = []
    out.append("| Command | What it does |")
    out.append("| --- | --- |")
    for spec in TABLE:
        out.append(f"| [`{spec.name}`](#image-{spec.name}) | {spec.summary} |")
    for spec in TABLE:
        out += ["", f"### `{PREFIX} {spec.name}`", "", f"{spec.summary} {spec.details}", "",
                "```"]
        out += list(spec.usage_lines)
        out.append("```")
        if spec.form_summaries:  # forms that do different things: say what each does
            out.append("")
            out += [f"- `{usage}`: {summary}" for usage, summary in spec.described_forms]
        if spec.options:
            out.append("")
            out += [f"- `{_option_synopsis(opt.flag, opt.metavar)}`: {opt.help}"
                    for opt in spec.options]
        out += ["", "Examples:", "", "```"]
        out += [f"{PREFIX} {example}" for example in spec.examples]
        out.append("```")
    return "\n".join(out) + "\n"
