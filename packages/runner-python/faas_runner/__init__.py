"""The faas Python runner: one HTTP/1.1 server process that becomes one function.

Run it as ``python3 -m faas_runner``; see ../README.md and
docs/runner-protocol.md.
"""

RUNTIME = "python"
