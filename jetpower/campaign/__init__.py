"""The campaign: the supervisor and what it sequences.

- :mod:`~jetpower.campaign.supervisor`: idle -> cooldown -> per model: benchmark -> cooldown;
- :mod:`~jetpower.campaign.sampling`: the campaign's one sampler, watched and restarted;
- :mod:`~jetpower.campaign.workers`: the benchmark worker processes, one per model;
- :mod:`~jetpower.campaign.manifest`: the run manifest;
- :mod:`~jetpower.campaign.thermal`: thermal zones and the temperature cooldown;
- :mod:`~jetpower.campaign.environment`: versions, board, JetPack, clocks.

It uses :mod:`jetpower.acquire` for sampling and :mod:`jetpower.plan` for its settings.
"""
