"""The parent side of sampling: start the sampler process, drain and decode its ring, write the
samples file, and compute window energies.

- :mod:`~jetpower.acquire.process`: start and stop the sampler child, the ready handshake;
- :mod:`~jetpower.acquire.recorder`: drain the ring into the samples file and the open sinks;
- :mod:`~jetpower.acquire.session`: one sampling session (ring directory, sampler, recorder);
- :mod:`~jetpower.acquire.samples_csv`: the only writer and reader of the samples file;
- :mod:`~jetpower.acquire.power_log`: the original power log;
- :mod:`~jetpower.acquire.decode`: ring records to readings (volts, amps, watts);
- :mod:`~jetpower.acquire.energy`: window energies from the samples file;
- :mod:`~jetpower.acquire.probe`: what a sensor's reads cost and how often values change.

Below it: :mod:`jetpower.sampler` (the child) and :mod:`jetpower.sensors` (discovery).
"""
