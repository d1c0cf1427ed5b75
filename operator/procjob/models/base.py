"""The base model every API type derives from: camelCase on the wire, frozen, strict about extras.

Frozen values mean the core changes state only by building new values (`model_copy(update=…)`),
never by mutating what it was given. `extra="forbid"` makes a misspelt field an error that names
the field instead of a silent drop.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    """A Kubernetes API object part: camelCase aliases, immutable, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        extra="forbid",
        use_enum_values=False,
    )

    def to_api(self) -> dict[str, Any]:
        """The wire form: camelCase keys, unset optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
