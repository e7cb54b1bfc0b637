"""`ganforge completion bash|zsh`: the shell code that completes ganforge's commands and options (argcomplete)."""
from __future__ import annotations

import argparse

SHELLS = ("bash", "zsh")


def cmd_completion(args: argparse.Namespace) -> int:
    import argcomplete  # only when asked: the completion itself runs `ganforge` with _ARGCOMPLETE set

    print(argcomplete.shellcode(["ganforge"], shell=args.shell))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("completion", help="print shell completion code for bash or zsh",
                       description="Print the code that makes your shell complete ganforge's commands and options. "
                                   "It is argcomplete's (the same as `register-python-argcomplete ganforge`).")
    p.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    p.set_defaults(handler=cmd_completion)
