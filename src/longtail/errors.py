"""User-facing errors.

Every problem a user can fix (missing data, a malformed file, a bad recipe key or value) is raised
as :class:`LongtailError` with one line that names the problem and the fix. The CLI prints that
line and exits with status 2, without a traceback.
"""


class LongtailError(Exception):
    """A problem the user can fix; its message is one line: what is wrong, then how to fix it."""
