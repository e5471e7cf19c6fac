"""Errors the library raises; the CLI turns each into one line on stderr and its exit code."""


class EsiError(Exception):
    """A command-level problem the user can fix: shown as one line, never as a traceback."""

    exit_code = 1
    label = "error:"  # the line's prefix on stderr


class Stopped(EsiError):
    """A designed stop (SIGTERM, Ctrl-C, --stop-after) that saved its work: not an error, still not a success."""

    exit_code = 130
    label = "stopped:"


class UsageError(EsiError):
    """Bad arguments or options."""

    exit_code = 2


class InputError(EsiError):
    """An input path or file that cannot be used."""

    exit_code = 2


class ArtifactError(EsiError):
    """An artifact directory that is missing, incomplete, of the wrong kind or fails its schema."""

    exit_code = 3


class SchemaVersionError(ArtifactError):
    """An artifact written with a schema version this esi-tools cannot read."""


class RecordError(Exception):
    """A problem with one record: it goes to the rejects table with this reason, the run goes on."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
