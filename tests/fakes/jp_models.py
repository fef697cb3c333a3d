"""Model factories for worker tests (named as ``jp_models:<factory>``)."""

from __future__ import annotations

import torch


class _FailsLater(torch.nn.Module):
    """Runs twice, then raises: a failure while running, after the configuration was accepted."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 2)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls > 2:
            raise RuntimeError("deliberate failure on call 3")
        return self.fc(x.flatten(1)[:, :4])


def fails_later() -> torch.nn.Module:
    return _FailsLater()


def not_a_module() -> object:
    return object()
