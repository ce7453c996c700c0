"""The message bus: Kafka-shaped topics, keys, partitions and consumer groups.

``Bus`` is the interface; ``MemoryBus`` is the in-process implementation used by the
embedded mode. A Kafka implementation fits the same interface.
"""

from chatmq.core.bus.base import Bus, Consumer, Record, TopicSpec
from chatmq.core.bus.memory import MemoryBus

__all__ = ["Bus", "Consumer", "MemoryBus", "Record", "TopicSpec"]
