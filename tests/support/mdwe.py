"""Run a command with memory-deny-write-execute, as `MemoryDenyWriteExecute=yes` does.

systemd enforces that setting with a seccomp filter; Linux 6.3+ offers the
same rule as prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN), kept across fork
and execve. Usage: python mdwe.py COMMAND [ARGS...]; exit 3 when the kernel
lacks it.
"""

from __future__ import annotations

import ctypes
import os
import sys

PR_SET_MDWE = 65
PR_GET_MDWE = 66
PR_MDWE_REFUSE_EXEC_GAIN = 1


def main() -> None:
    """Turn the rule on, check it holds, then become the command."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0 \
            or libc.prctl(PR_GET_MDWE, 0, 0, 0, 0) != PR_MDWE_REFUSE_EXEC_GAIN:
        print(f"mdwe: prctl(PR_SET_MDWE) failed: {os.strerror(ctypes.get_errno())}",
              file=sys.stderr)
        sys.exit(3)
    os.execv(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
