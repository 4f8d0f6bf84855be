"""``python -m difflens.runner --config demo``: run every notebook (:mod:`difflens.runner.notebooks`)."""

import sys

from difflens.runner.notebooks import main

sys.exit(main())
