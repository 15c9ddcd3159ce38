"""Run many ``wavegen`` command lines fast: import torch and wavegen once, then fork a process per
command line that runs the real entry point (``wavegen.cli.main``, what the ``wavegen`` script
and ``python -m wavegen`` call) in its own folder and environment, with its own stdout, stderr
and exit status.

A fresh interpreter per command costs ~2-3 s of imports; a fork costs milliseconds. Used by
tests/test_cli_misuse.py: it writes one JSON object per line on stdin ({"args", "cwd", "env",
"stdout", "stderr"}), and this prints {"index", "status"} per command as each one ends.
"""

from __future__ import annotations

import json
import os
import sys
import traceback


def run_one(case: dict) -> None:
    """In the forked process: become the command, then exit with its status."""
    code = 1
    try:
        os.chdir(case["cwd"])
        os.environ.update(case["env"])
        for fd, path in ((1, case["stdout"]), (2, case["stderr"])):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
        from wavegen.cli import main

        try:
            main(case["args"], prog_name="wavegen")
            code = 0
        except SystemExit as exc:  # how click ends every command
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # what the interpreter would print and exit 1 for
            traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve(parallel: int) -> None:
    # The slow imports, once, before any fork. Nothing here starts a thread or touches CUDA
    # (a forked process could not use either).
    import torch  # noqa: F401

    import wavegen.bench.sampling  # noqa: F401
    import wavegen.cli  # noqa: F401
    import wavegen.commands.eval  # noqa: F401
    import wavegen.synthesis.synth  # noqa: F401
    import wavegen.synthesis.vocode  # noqa: F401
    import wavegen.train.loop  # noqa: F401

    cases = [json.loads(line) for line in sys.stdin if line.strip()]
    waiting, running = list(enumerate(cases)), {}
    while waiting or running:
        while waiting and len(running) < parallel:
            index, case = waiting.pop(0)
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                run_one(case)
            running[pid] = index
        pid, status = os.wait()
        print(json.dumps({"index": running.pop(pid), "status": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    serve(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
