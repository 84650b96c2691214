"""``python -m sagebidi_perf.container serve ...``: the image's entrypoint."""

import sys

from sagebidi_perf.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
