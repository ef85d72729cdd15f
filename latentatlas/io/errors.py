"""The one exception type for problems a user can fix (bad file, bad argument).

The CLI turns it into a one-line message and exit code 2; anything else is a bug and
keeps its traceback.
"""


class UserError(Exception):
    """Something wrong with what the user gave us; the message says what and what to do."""
