import sys

from samtrack.cli import main

sys.exit(main())
