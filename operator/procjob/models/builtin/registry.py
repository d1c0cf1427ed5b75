"""The one list of built-in stages: validation, the pod builder and `procjob worker` read it.

To add a stage, write its descriptor beside the others and add it to BUILTIN_STAGES (the whole
recipe is in procjob/worker/README.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from procjob.models.builtin.base import BuiltinStage
from procjob.models.builtin.checksum import CHECKSUM
from procjob.models.builtin.fetch import FETCH

BUILTIN_STAGES: Mapping[str, BuiltinStage] = MappingProxyType({stage.name: stage for stage in (FETCH, CHECKSUM)})


def known_stages() -> str:
    """The names of the built-in stages, for messages: ``fetch, checksum``."""
    return ", ".join(BUILTIN_STAGES)
