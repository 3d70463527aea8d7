"""The command line's plumbing: one error line for every failure (ours and the parser's), --debug and
--version anywhere, flags shown as flags, a closed stdout that ends output but not the command."""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable

import typer
from typer.core import TyperGroup

PREFIX = "error:"  # the one prefix of every error line, ours and the command-line parser's


def _usage_errors() -> tuple[type, ...]:
    """The parser's usage-error classes: typer ≥ 0.2x vendors click (its errors derive from TyperException)."""
    found = [t for t in (getattr(typer, "TyperException", None),) if t is not None]
    try:
        import click

        found.append(click.ClickException)
    except ImportError:
        pass
    return tuple(found)


class CommandGroup(TyperGroup):
    """The command group: usage errors as one ``error:`` line (exit 2), flags shown as flags in --help."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        _flags_as_flags(self)
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _usage_errors() as e:
            if type(e).__name__ == "NoArgsIsHelpError":  # bare `compressor`: the help, not an error
                e.show()
                sys.exit(0)
            ctx = getattr(e, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            _say_error(escape_markup(e.format_message() + hint))
            code = e.exit_code
        except typer.Abort:
            _say_error("aborted")
            code = 1
        except BrokenPipeError:  # --help or a table into a pipe its reader closed
            from compressor.core.console import silence_stdout

            silence_stdout()
            code = 0
        sys.exit(code if isinstance(code, int) else 0)


def _flags_as_flags(group) -> None:
    """--force, not ``--force <bool>``: boolean flags take no value, so their help shows none."""

    def no_type(option):
        if option is not None and getattr(option, "is_flag", False) and hasattr(option, "display_type_rich"):
            option.display_type_rich = lambda ctx: None
        return option

    for cmd in [group, *group.commands.values()]:
        for p in cmd.params:
            no_type(p)
        if not getattr(cmd, "_flags_shown", False):  # --help is made on demand
            cmd.get_help_option = lambda ctx, made=cmd.get_help_option: no_type(made(ctx))
            cmd._flags_shown = True


STATE = {"debug": False}


def _say_error(message: str) -> None:
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]{PREFIX}[/] {message}", markup=True)


def _fail(message: str, code: int) -> None:
    """One red line on stderr (``error: …``) and exit ``code``; with --debug the traceback comes first."""
    if STATE["debug"]:
        import traceback

        traceback.print_exc()
    _say_error(message)
    raise typer.Exit(code)


DebugOpt = typer.Option(False, "--debug", help="Show the full traceback before the error line (also before the command).")


def guarded(fn: Callable) -> Callable:
    """Turn CompressorError into one line + exit 2; anything else into one line + exit 1.

    Every guarded command also takes ``--debug`` (the traceback is shown first; exit codes stay the same)."""

    @functools.wraps(fn)
    def wrapper(*args, debug: bool = False, **kwargs):
        from compressor.core.errors import CompressorError

        STATE["debug"] = STATE["debug"] or debug
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except CompressorError as e:
            _fail(escape_markup(str(e)), e.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except BrokenPipeError:  # the reader of stdout went away after the work was done: not a failure
            from compressor.core.console import silence_stdout

            silence_stdout()
        except Exception as e:
            from compressor.core.writeerrors import as_write_error

            if (err := as_write_error(e, strict=True)) is not None:  # disk full, read-only: not a bug
                _fail(escape_markup(str(err)), err.exit_code)
            _fail(
                escape_markup(
                    f"internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
                    "(run with --debug for the traceback and please report it)"
                ),
                1,
            )

    sig = inspect.signature(fn)
    debug = inspect.Parameter("debug", inspect.Parameter.KEYWORD_ONLY, default=DebugOpt, annotation=bool)
    wrapper.__signature__ = sig.replace(parameters=[*sig.parameters.values(), debug])
    return wrapper


def escape_markup(s: str) -> str:
    from rich.markup import escape

    return escape(s)


def print_version(value: bool) -> None:
    if value:
        from compressor import __version__

        typer.echo(__version__)
        raise typer.Exit(0)


TaskOpt = typer.Option("auto", "--task", help="sequence-classification | causal-lm | auto (from config.json / the graph).")


def warn(message: str) -> None:
    """One yellow ``warning:`` line on stderr."""
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold yellow]warning:[/] {escape_markup(message)}", markup=True)


def quiet_transformers() -> None:
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def ints(text: str, what: str) -> list[int]:
    """Positive integers separated by commas (``--batch-sizes 1,8``)."""
    from compressor.core.errors import CompressorError

    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise CompressorError(f"{what} {text!r}: give positive integers separated by commas, e.g. 1,8")
    return values
