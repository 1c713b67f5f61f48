"""`python3 -m mock_upstream`; also the `mock-upstream` console script."""

import sys

from mock_upstream.cli import main

if __name__ == "__main__":
    sys.exit(main())
