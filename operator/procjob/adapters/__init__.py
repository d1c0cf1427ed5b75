"""procjob.adapters."""
