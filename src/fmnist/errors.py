"""User-facing errors: the CLI prints their message on one line and exits with code 2."""


class FmnistError(Exception):
    """A problem the user can fix (bad flag, missing data, broken bundle). Never a bug."""

    exit_code = 2


class ConfigError(FmnistError):
    """A hyper-parameter or flag value is out of range or unknown."""


class DataError(FmnistError):
    """The Fashion-MNIST files cannot be found, checked or downloaded."""


class BundleError(FmnistError):
    """An artifact bundle is missing, incomplete, altered or of an unknown format."""


class InputError(FmnistError):
    """An input image, array or request parameter cannot be used."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM stopped a command. A BaseException, like KeyboardInterrupt, so no
    ``except Exception`` on the way up swallows it; the exit code is the shell's 128 + signal."""

    def __init__(self, signum: int, message: str = ""):
        super().__init__(message)
        self.signum, self.message = signum, message

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class MissingExtraError(FmnistError):
    """A command needs libraries of an extra that is not installed (``pip install "fmnist[train]"``)."""


def print_error(message: object) -> None:
    """The one-line form every fmnist error takes on stderr."""
    import sys

    print(f"fmnist: error: {message}", file=sys.stderr)


def report_error(error: FmnistError | KeyboardInterrupt | Interrupted) -> int:
    """Print ``error`` as one line; its exit code: 2 for an FmnistError, 130 for Ctrl-C, 143 for SIGTERM."""
    if isinstance(error, KeyboardInterrupt | Interrupted):
        import sys

        print(f"fmnist: {getattr(error, 'message', '') or 'interrupted'}", file=sys.stderr)
        return getattr(error, "exit_code", 130)
    print_error(error)
    return error.exit_code


def report_errors(command):
    """Decorate a Typer command: an FmnistError becomes one line on stderr and exit code 2."""
    import functools

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        import typer

        try:
            return command(*args, **kwargs)
        except (FmnistError, KeyboardInterrupt, Interrupted) as e:
            raise typer.Exit(report_error(e)) from None

    return wrapper
