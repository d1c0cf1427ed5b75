"""`python -m procjob.worker STAGE`: the worker without the `procjob` command's parser."""

import sys

from procjob.worker.main import main

sys.exit(main(sys.argv[1:]))
