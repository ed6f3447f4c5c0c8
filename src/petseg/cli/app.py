"""The Typer application and the entry point that turns user errors into one line."""

from __future__ import annotations

import contextlib
import signal
import sys
import warnings
from typing import Iterator

import typer

from petseg.errors import PetsegError, TrainInstallMissing, clipped, command_line_flag, missing_train_extra, one_line

app = typer.Typer(
    name="petseg",
    help="Train U-Net segmentation models and cut pets out of photos.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


# Longer problem lines lose their middle: what they echo is clipped where they are made, but
# not paths, and no message may be megabytes.
LONGEST_LINE = 1000


def problem_line(kind: str, message: str) -> str:
    """"error: ...", "warning: ...": one line, file names' control characters escaped, at most
    about LONGEST_LINE characters of the message."""
    if len(message) > LONGEST_LINE:
        left_out = len(message) - LONGEST_LINE
        message = f"{message[:LONGEST_LINE // 2]} …[{left_out} characters left out]… {message[-LONGEST_LINE // 2:]}"
    return f"{kind}: {one_line(message)}"


def say(kind: str, message: str) -> None:
    """A problem_line to stderr."""
    typer.echo(problem_line(kind, message), err=True)


def fail(message: str, exit_code: int = 2) -> None:
    """Print one error line to stderr and exit: the CLI's answer to a user mistake."""
    say("error", message)
    raise typer.Exit(exit_code)


def main() -> None:
    # This program applies its own --max-pixels before decoding; Pillow's warning between
    # PIL.Image.MAX_IMAGE_PIXELS and twice that would only repeat it in two lines.
    warnings.filterwarnings("ignore", message=r"Image size \(\d+ pixels\) exceeds limit", module="PIL")
    # A warning is one line for the user ("warning: ..."), not Python's file, line and source.
    warnings.showwarning = lambda message, *_, **__: say("warning", str(message))
    empty = _empty_argument(sys.argv[1:])
    if empty is not None:
        say("error", empty)
        sys.exit(2)
    try:
        with _sigterm_as_exit():
            sys.exit(_run_app())
    except TrainInstallMissing as error:  # from the Python API inside a command: name the command
        say("error", str(TrainInstallMissing(f"petseg {_command_name()}", error.package)))
        sys.exit(error.exit_code)
    except PetsegError as error:
        say("error", error.worded(command_line_flag))
        sys.exit(error.exit_code)
    except ModuleNotFoundError as error:  # a command of the training install, run without it
        problem = missing_train_extra(error, f"petseg {_command_name()}")
        if problem is None:
            raise
        say("error", str(problem))
        sys.exit(problem.exit_code)
    except BrokenPipeError:  # output piped into `head`, which has read enough
        sys.stderr.close()  # nothing more to say; Python would complain while flushing stdout at exit
        sys.exit(1)
    except OSError as error:  # what the system refused on a path the user gave (a name over 255 bytes, ...)
        say("error", _os_problem(error))
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """SIGTERM (kill, timeout, a job scheduler, torchrun) as SystemExit(143), so that every
    command's cleanup runs as on Ctrl-C: staging folders and temporaries are removed, not left
    for a later run to find. A second SIGTERM kills at once."""

    def stop(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread (a test runner's): leave signals alone
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _os_problem(error: OSError) -> str:
    reason = error.strerror or str(error) or type(error).__name__
    return reason if error.filename is None else f"{clipped(str(error.filename))}: {reason}"


def _run_app() -> int:
    """Run the Typer app; its exit code. A usage mistake (an unknown option, a value out of
    range, a missing argument) is one line, where Typer would draw a box under the usage."""
    try:  # Typer 0.29 carries its own copy of click
        from typer._click.exceptions import NoArgsIsHelpError, UsageError
    except ImportError:
        from click.exceptions import NoArgsIsHelpError, UsageError

    try:
        result = app(standalone_mode=False)
    except NoArgsIsHelpError as no_command:  # `petseg` or `petseg data` alone: the help
        if no_command.message:  # with rich, making the error printed the help already
            typer.echo(no_command.message)
        return 2
    except UsageError as error:
        command = f" (see {error.ctx.command_path} --help)" if error.ctx is not None else ""
        say("error", error.format_message() + command)
        return error.exit_code
    except typer.Abort:  # end of input at a prompt
        typer.echo("aborted", err=True)
        return 1
    return result if isinstance(result, int) else 0  # typer.Exit's code, or None when a command ends


def _empty_argument(arguments: list[str]) -> str | None:
    """What is wrong if an argument is empty, else None.

    An empty path is the current folder to Python: `petseg cutout "$PHOTO"` with PHOTO
    unset would cut out every photo in it, and `--out ""` would write there. No petseg
    option or argument takes an empty value.
    """
    for position, argument in enumerate(arguments):
        name, equals, value = argument.partition("=")
        if equals and name.startswith("--") and not value:
            return f"{name} is empty"
        if argument == "":
            return "an argument is empty" + (f" (after {arguments[position - 1]})" if position else "")
    return None


def _command_name() -> str:
    return next((argument for argument in sys.argv[1:] if not argument.startswith("-")), "")
