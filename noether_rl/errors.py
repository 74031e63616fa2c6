"""User-facing errors. The CLI turns a :class:`UserError` into one line on stderr and exit code 2."""


class UserError(Exception):
    """A mistake the user can fix (bad argument, wrong path, corrupt file). Message says how."""


class DataError(UserError):
    """A recording on disk is missing, truncated, corrupt or does not match its manifest."""
