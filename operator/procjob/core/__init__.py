"""procjob.core."""
