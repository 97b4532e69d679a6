"""``python -m commune_collector.cli``: the same as the ``commune-collector`` command."""

import sys

from commune_collector.cli import main

sys.exit(main())
