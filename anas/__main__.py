import sys

from anas.cli import main

sys.exit(main())
