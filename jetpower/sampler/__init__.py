"""The power sampler: a C loop in its own process writing a ring-buffer file.

``jetpower._native`` is the only module that touches the compiled ``jetpower._sampler``;
``jetpower.acquire.process`` starts and owns the sampler process; ``jetpower.acquire.decode``
turns raw records into rail readings.
"""
