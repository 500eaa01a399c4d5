"""The registrar: study history and pairing with the prior study (``history``, ``server``), and
the comparison of a follow-up with its prior (``longitudinal``: per-vertebra rigid
``registration``, lesion ``change``)."""
