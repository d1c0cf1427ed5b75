"""procjob.controller."""
