"""User-facing errors.

Every problem a user can fix (missing data, a malformed file, a bad recipe key or value) is raised
as :class:`LongtailError` with one line that names the problem and the fix. The CLI prints that
line and exits with status 2, without a traceback. Under ``torchrun`` every rank that fails prints
its line, except an error marked ``every_rank``: one that every rank raises alike because it checks
a value the ranks share (the loss averaged over ranks), which rank 0 alone prints.
"""


class LongtailError(Exception):
    """A problem the user can fix; its message is one line: what is wrong, then how to fix it."""

    def __init__(self, message: str, every_rank: bool = False) -> None:
        super().__init__(message)
        self.every_rank = every_rank


def require(*checks: tuple[str, object, bool, str]) -> None:
    """``(key, value, ok, rule)`` each: the first failing check as one line naming its key."""
    for key, value, ok, rule in checks:
        if not ok:
            raise LongtailError(f"{key}={value} must be {rule}: fix the recipe or override")
