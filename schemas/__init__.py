"""Record definitions shared by every pipeline stage: one source for Python, Flink SQL and ClickHouse types."""

from schemas.flow_record import FLOW_RECORD_FIELDS, FLOW_SCHEMA_VERSION, FLOW_TOPIC, FlowRecord, HistBin
from schemas.histogram import RTT_GAMMA, bucket_lower_us, bucket_of_us, bucket_upper_us

__all__ = [
    "FLOW_RECORD_FIELDS",
    "FLOW_SCHEMA_VERSION",
    "FLOW_TOPIC",
    "RTT_GAMMA",
    "FlowRecord",
    "HistBin",
    "bucket_lower_us",
    "bucket_of_us",
    "bucket_upper_us",
]
