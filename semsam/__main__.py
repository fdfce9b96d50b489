import sys

from semsam.cli.main import main

sys.exit(main())
