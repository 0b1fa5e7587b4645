"""KG errors: one line naming the file/row/field and what was expected, so a user can fix their KG."""


class KGError(ValueError):
    """A knowledge graph file or query is invalid; the message is a single actionable line."""
