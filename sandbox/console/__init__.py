"""`imagebot sandbox`: an interactive console (and `--script` runner) over the whole system.

`parse_console_line` is the console's grammar (pure); `Console` executes lines against a running
`sandbox.system.System`; `sandbox.console.run.run_sandbox` starts everything.
"""

from sandbox.console.parse import ConsoleCommand, ConsoleSyntaxError, parse_console_line

__all__ = ["ConsoleCommand", "ConsoleSyntaxError", "parse_console_line"]
