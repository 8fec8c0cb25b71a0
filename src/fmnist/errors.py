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


def exit_code_of(error: FmnistError | KeyboardInterrupt) -> int:
    """Report ``error`` as one line on stderr; the exit code: 2 for an FmnistError, 130 for Ctrl-C."""
    import sys

    if isinstance(error, KeyboardInterrupt):
        print("fmnist: interrupted", file=sys.stderr)
        return 130
    print(f"fmnist: error: {error}", file=sys.stderr)
    return error.exit_code


def report_errors(command):
    """Decorate a Typer command: an FmnistError becomes one line on stderr and exit code 2."""
    import functools

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        import typer

        try:
            return command(*args, **kwargs)
        except (FmnistError, KeyboardInterrupt) as e:
            raise typer.Exit(exit_code_of(e)) from None

    return wrapper
