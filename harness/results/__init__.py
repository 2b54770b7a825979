"""Results store: one validated JSON record per job, written atomically, aggregated to CSV."""

from harness.results.store import (
    RECORD_COLUMNS,
    RecordError,
    read_record,
    validate_record,
    write_json_atomic,
    write_record,
)

__all__ = ["RECORD_COLUMNS", "RecordError", "read_record", "validate_record",
           "write_json_atomic", "write_record"]
