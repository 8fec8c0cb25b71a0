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


def report_errors(command):
    """Decorate a CLI command: an FmnistError becomes one line on stderr and exit code 2."""
    import functools

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        import sys

        import typer

        try:
            return command(*args, **kwargs)
        except FmnistError as e:
            print(f"fmnist: error: {e}", file=sys.stderr)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            print("fmnist: interrupted", file=sys.stderr)
            raise typer.Exit(130) from None

    return wrapper
