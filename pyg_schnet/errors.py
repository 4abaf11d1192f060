"""User-facing errors: the CLI prints these as one line and exits non-zero."""


class UserError(Exception):
    """A bad input (config, file, molecule, directory) the user can fix.

    The CLI catches it, prints ``error: <message>`` on one line to stderr and
    exits with status 2; library users get an ordinary exception.
    """
