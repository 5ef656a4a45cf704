"""Packet sources: everything that hands RawFrame records to the decoder."""

from ingest.sources.pcapfile import MAX_CAPLEN, CaptureError, CaptureReader, CaptureStats, open_capture

__all__ = ["MAX_CAPLEN", "CaptureError", "CaptureReader", "CaptureStats", "open_capture"]
