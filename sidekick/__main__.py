import sys

from sidekick.cli import main

sys.exit(main())
