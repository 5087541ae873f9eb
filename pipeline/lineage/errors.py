"""The one exception the lineage tool raises for problems a user can fix.

The CLI turns it into a one-line message and a non-zero exit; library callers
catch it like any other error. Anything else escaping is a bug in the tool.
"""


class LineageError(Exception):
  """A missing store, an unknown id or version, or an unreadable config."""
