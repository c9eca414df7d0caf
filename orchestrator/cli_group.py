"""The command line's top group: every failure the user sees is one line on stderr and exit 1.

Click prints usage errors as a framed block and exits 2; a bug would print a traceback. Here a
usage error (a missing option, a value of the wrong type) becomes ``error: …`` with the command's
``--help`` to read, and an error nobody expected becomes one line naming its type, with the
traceback shown only when ``SAVERZOO_DEBUG`` is set.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from typer import _click as click  # typer carries its own click
from typer.core import TyperGroup

DEBUG_VARIABLE = "SAVERZOO_DEBUG"
UNEXPECTED = "unexpected"  # the word that marks a bug in the one line


def _one_line(message: str) -> str:
    return " ".join(message.split())


class OneLineErrors(TyperGroup):
    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        from orchestrator.console import fail

        try:
            result: Any = super().main(
                args, prog_name, complete_var, standalone_mode=False, **extra
            )
        except click.UsageError as error:
            where = f"; see `{error.ctx.command_path} --help`" if error.ctx else ""
            fail(_one_line(error.format_message()) + where)
            sys.exit(1)
        except click.ClickException as error:
            fail(_one_line(error.format_message()))
            sys.exit(1)
        except click.Abort:
            fail("interrupted")
            sys.exit(130)
        except Exception as error:
            if os.environ.get(DEBUG_VARIABLE):
                raise
            fail(
                f"{UNEXPECTED} {type(error).__name__}: {_one_line(str(error))[:300]} "
                f"(set {DEBUG_VARIABLE}=1 to see where)"
            )
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)
