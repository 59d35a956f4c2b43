"""``python -m ldmvfi_fast ...`` is the ``ldmvfi-fast`` command."""
import sys

from .cli import main

sys.exit(main())
