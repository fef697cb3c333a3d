"""The power sampler: a C loop in its own process writing a ring-buffer file.

``jetpower.sampler._native`` is the only module that touches the compiled ``jetpower._sampler``;
``jetpower.sampler.process`` starts and owns the sampler process; ``jetpower.sampler.stream``
turns raw records into rail readings.
"""
