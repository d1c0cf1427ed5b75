"""procjob.worker."""
