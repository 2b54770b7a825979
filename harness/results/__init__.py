"""Results store: one validated JSON record per job, written atomically, read back as a typed
`Record` (load_record), and turned into the one runs frame every table is built from
(harness.results.aggregate)."""

from harness.results.record import Record
from harness.results.store import (
    RECORD_COLUMNS,
    RecordError,
    load_record,
    read_record,
    validate_record,
    write_json_atomic,
    write_record,
)

__all__ = ["RECORD_COLUMNS", "Record", "RecordError", "load_record", "read_record",
           "validate_record", "write_json_atomic", "write_record"]
