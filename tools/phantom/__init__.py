"""Synthetic thoraco-lumbar CT phantoms with ground truth (vertebrae, muscles, lesions).

``generate(PhantomOptions(seed=...))`` returns a :class:`Phantom`; ``write_dicom_series`` and
``write_nifti`` store it; ``follow_up(phantom, FollowUpOptions(seed=...))`` makes a later study
of the same patient with the exact per-vertebra transforms and lesion changes. Everything is
deterministic for a given seed.
"""

from phantom.canvas import Tissue
from phantom.followup import FollowUp, follow_up
from phantom.generator import Phantom, generate
from phantom.options import FollowUpOptions, PhantomOptions
from phantom.writers import write_dicom_series, write_nifti

__all__ = ["FollowUp", "FollowUpOptions", "Phantom", "PhantomOptions", "Tissue", "follow_up",
           "generate", "write_dicom_series", "write_nifti"]
