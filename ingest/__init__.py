"""Packets -> flow records: packet sources, decoder, flow meter, latency, enrichment, Kafka producer."""
