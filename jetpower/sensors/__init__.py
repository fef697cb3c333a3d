"""Power-sensor discovery: typed, immutable descriptions of the rails under a root."""

from jetpower.sensors._types import Channel, Rail, SensorSet, TotalRule
from jetpower.sensors.boards import BOARD_RULES, board_info, total_rule
from jetpower.sensors.discover import SOURCES, discover

__all__ = [
    "BOARD_RULES",
    "SOURCES",
    "Channel",
    "Rail",
    "SensorSet",
    "TotalRule",
    "board_info",
    "discover",
    "total_rule",
]
