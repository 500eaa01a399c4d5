"""Synthetic thoraco-lumbar CT phantoms with ground truth (vertebrae, muscles, lesions).

``generate(PhantomOptions(seed=...))`` returns a :class:`Phantom`; ``write_dicom_series`` and
``write_nifti`` store it. Everything is deterministic for a given seed.
"""

from phantom.canvas import Tissue
from phantom.generator import Phantom, generate
from phantom.options import PhantomOptions
from phantom.writers import write_dicom_series, write_nifti

__all__ = ["Phantom", "PhantomOptions", "Tissue", "generate", "write_dicom_series",
           "write_nifti"]
