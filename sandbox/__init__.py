"""The simulated world: cloud (Keystone/Nova/Glance), Slack emulator, console.

Nothing in `bot/` or `commands/` imports this package (only the CLI's sandbox commands do).
"""
