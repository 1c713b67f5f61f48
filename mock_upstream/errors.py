"""The one error type the stand-in raises on purpose."""


class StartupError(Exception):
    """Bad flags, unreadable certificates or an unbindable port.

    The message is one line that names the flag or file and, where there is one, the fix; the CLI
    prints it as `mock_upstream: error: <message>` and exits non-zero, without a traceback.
    """
