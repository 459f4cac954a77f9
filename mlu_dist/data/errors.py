"""The one error every data problem becomes (its own module: the schema, the importer and the
translation all raise it, and the schema reads translated directories)."""


class DataError(ValueError):
    """The fact data does not follow the schema; the message lists every problem found."""
