"""Entry point: ``python3 -m faas_runner``. Wires config, runner and process exit."""

from __future__ import annotations

import asyncio
import os
import sys
import time

STARTED = time.monotonic()


def main() -> None:
    # `faas` (the handler API) sits beside this package; make it importable
    # however the runner was started (cwd, PYTHONPATH or an absolute -m path).
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if root not in sys.path:
        sys.path.insert(0, root)
    sys.stdout.reconfigure(line_buffering=True)  # handler prints reach the logs promptly
    sys.dont_write_bytecode = True  # function code is imported once; a .pyc would only cost a write

    from . import log
    from .config import ConfigError, load_config
    from .loader import LoadError, SpecError
    from .server import Runner, write_termination_log

    try:
        config = load_config(os.environ)
    except ConfigError as err:
        log.error("bad_config", error=str(err))
        sys.exit(2)
    runner = Runner(config)
    runner.process_started = STARTED
    try:
        runner.specialize_from_code_dir()
    except (SpecError, LoadError, OSError) as err:
        log.error("code_dir_load_failed", codeDir=config.code_dir or "(FAAS_FUNCTION_SPEC)", error=str(err))
        write_termination_log(f"code_dir_load_failed: {err}")
        sys.exit(1)
    code = asyncio.run(runner.run())
    log.info("exit", code=code)
    sys.stdout.flush()
    sys.stderr.flush()
    # os._exit: a stuck handler thread would otherwise block interpreter exit forever.
    os._exit(code)


if __name__ == "__main__":
    main()
