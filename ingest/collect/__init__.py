"""Router flow export collector: NetFlow v5/v9, IPFIX and sFlow v5 datagrams -> FlowRecords.

The native engine (``gwtel_native.Collector``) decodes whole batches of datagrams; this package frames them,
maps exporters and interfaces to links and directions, and builds the records the capture agent also sends.
"""
