import sys

from noether_rl.cli.main import main

sys.exit(main())
