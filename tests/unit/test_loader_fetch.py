"""The loader's consumer fetches without librdkafka's 1 s pause after its prefetch queue fills."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaException

from gwtel.config import GwtelConfig
from processors.loader_consumer import LoaderConsumer
from processors.loader_setup import make_consumer


def test_the_consumer_is_built_with_the_fetch_settings_librdkafka_accepts() -> None:
    consumer = make_consumer(GwtelConfig())
    try:
        # Built: librdkafka refuses an unknown or out-of-range property when the consumer is made (below).
        # 1 s (librdkafka's default) held a consumer that polls without pause near 110k records/s.
        assert consumer._config["fetch.queue.backoff.ms"] <= 50
        # Fetches of several MB a partition: the landing path takes a poll's records in one step.
        assert consumer._config["max.partition.fetch.bytes"] >= 1 << 20
    finally:
        consumer.close()


def test_librdkafka_refuses_a_misspelt_fetch_setting() -> None:
    # What the first test relies on: a property librdkafka does not know fails at construction.
    with pytest.raises(KafkaException, match=r"fetch\.queue\.backof"):
        LoaderConsumer({"bootstrap.servers": "127.0.0.1:1", "group.id": "g", "fetch.queue.backof.ms": 10}, 10)
