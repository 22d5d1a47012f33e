"""The city: jurisdictions, offices, routing rules, time limits, channels, Kafka.

``load(dir)`` validates a configuration directory; the packaged default is 赣州市.
"""

from .loader import DEFAULT_DIR, ConfigError, LoadedConfig, load, load_snapshot, snapshot
from .offices import OfficeDirectory, build_offices
from .schema import CATEGORIES, MESSAGE_TYPES, UNKNOWN, Settings

__all__ = [
    "CATEGORIES",
    "DEFAULT_DIR",
    "MESSAGE_TYPES",
    "UNKNOWN",
    "ConfigError",
    "LoadedConfig",
    "OfficeDirectory",
    "Settings",
    "build_offices",
    "load",
    "load_snapshot",
    "snapshot",
]
