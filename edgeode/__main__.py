import sys

from edgeode.cli import main

sys.exit(main())
