"""procjob.models."""
