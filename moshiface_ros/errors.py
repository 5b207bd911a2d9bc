"""The one error type a user sees: a problem with their input or environment."""


class MoshifaceError(Exception):
    """A problem the user can fix, described in one line.

    The command line prints it as ``moshiface: error: <message>`` and exits non-zero,
    without a traceback; anything else that escapes is a bug.
    """
