"""Small shared helpers: atomic file writes, seeding, progress bars."""

from qcalo.utils.atomic import atomic_path
from qcalo.utils.progress import progress
from qcalo.utils.seeding import seed_everything

__all__ = ["atomic_path", "progress", "seed_everything"]
