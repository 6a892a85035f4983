import sys

from opencustomvision.cli import main

sys.exit(main())
