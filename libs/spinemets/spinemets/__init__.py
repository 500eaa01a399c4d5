"""Shared library of the spinal-metastasis CT services.

Configuration, logging, gRPC helpers, DICOM geometry, the label catalogue, coded concepts,
deterministic UIDs and the error hierarchy. The generated gRPC stubs live in
:mod:`spinemets.v1` (built from ``proto/`` by ``make proto``).
"""

__version__ = "0.1.0"
