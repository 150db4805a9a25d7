"""``python -m ray_rec`` is the same as the ``ray-rec`` console script."""

import sys

from ray_rec.cli import main

sys.exit(main())
