"""The command line's top group: every failure the user sees is one line on stderr and exit 1.

Click prints usage errors as a framed block and exits 2; a bug would print a traceback. Here a
usage error (a missing option, a value of the wrong type) becomes ``error: …`` with the command's
``--help`` to read, and an error nobody expected becomes one ``internal error`` line naming its
type, with the traceback shown only when ``SAVERZOO_DEBUG`` is set.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, ClassVar

import typer

# typer carries its own copy of click: its exceptions, not the click package's, reach this group.
from typer import Abort
from typer._click.core import Command, Context
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
from typer.core import TyperGroup

DEBUG_VARIABLE = "SAVERZOO_DEBUG"
# What `pip install 'saverzoo[worker]'` adds: a command that needs one of them says so.
WORKER_MODULES = frozenset({"torch", "torchvision", "timm", "ray", "safetensors"})
UNEXPECTED = "internal error"  # the words that mark a bug in the one line


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _missing_worker_module(error: Exception) -> str | None:
    """The worker extra's module the error did not find, or None."""
    if isinstance(error, ModuleNotFoundError) and error.name:
        return error.name if error.name.split(".")[0] in WORKER_MODULES else None
    return None


class OneLineErrors(TyperGroup):
    def main(  # type: ignore[override]  # click's own signature, with its defaults
        self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra
    ):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        from orchestrator.cli.console import fail

        try:
            result: Any = super().main(
                args, prog_name, complete_var, standalone_mode=False, **extra
            )
        except NoArgsIsHelpError as error:  # bare `saverzoo` or `saverzoo sweep`: the help
            print(error.ctx.get_help() if error.ctx else error.format_message())
            sys.exit(0)
        except UsageError as error:
            where = f"; see `{error.ctx.command_path} --help`" if error.ctx else ""
            fail(_one_line(error.format_message()).rstrip(".") + where)
            sys.exit(1)
        except ClickException as error:
            fail(_one_line(error.format_message()))
            sys.exit(1)
        except Abort:
            fail("interrupted")
            sys.exit(130)
        except Exception as error:
            if (missing := _missing_worker_module(error)) is not None:
                fail(
                    f"this command evaluates models and needs the worker extra (no module named "
                    f"{missing!r}): pip install 'saverzoo[worker]'"
                )
                sys.exit(1)
            if os.environ.get(DEBUG_VARIABLE):
                raise
            fail(
                f"{UNEXPECTED} ({type(error).__name__}: {_one_line(str(error))[:300]}); "
                f"set {DEBUG_VARIABLE}=1 to see where"
            )
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


class LazyCommands(OneLineErrors):
    """The top group, whose commands are built when they are called: a command's module is imported
    and its options turned into click parameters only for the command that runs (``--help``
    builds them all). ``COMMANDS`` maps a name to ``(module, attribute)``: a typer group, or a
    function that is one command."""

    COMMANDS: ClassVar[dict[str, tuple[str, str]]] = {}

    def list_commands(self, ctx: Context) -> list[str]:
        return [*self.COMMANDS, *super().list_commands(ctx)]

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name not in self.COMMANDS:
            return super().get_command(ctx, cmd_name)
        if cmd_name not in self.commands:
            module, attribute = self.COMMANDS[cmd_name]
            target = getattr(importlib.import_module(module), attribute)
            if isinstance(target, typer.Typer):  # a group stays a group, even of one command
                command: Command = typer.main.get_group(target)
            else:
                command = typer.main.get_command(_one_command(cmd_name, target))
            command.name = cmd_name
            self.commands[cmd_name] = command
        return self.commands[cmd_name]


def _one_command(name: str, function: Any) -> typer.Typer:
    app = typer.Typer()
    app.command(name)(function)
    return app
