"""procjob.cli."""
