"""procjob: a Kubernetes operator for staged processing jobs.

Layers (checked by import-linter, see pyproject.toml):
cli -> handlers -> controller -> adapters -> core -> models; worker -> models.
"""

__version__ = "0.1.0"
