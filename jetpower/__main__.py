import sys

from jetpower.cli import main

sys.exit(main())
