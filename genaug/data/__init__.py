"""Data sources, splits and ImageFolder export (SPEC §2)."""

from genaug.data.base import SPLITS, LabeledData, Split
from genaug.data.registry import SOURCES, load_data, register_source

__all__ = ["SPLITS", "SOURCES", "LabeledData", "Split", "load_data", "register_source"]
