"""The record every reader produces and every consumer takes."""

from __future__ import annotations

from dataclasses import dataclass

VISIBLE = "visible"
INFRARED = "infrared"
MODALITIES = (VISIBLE, INFRARED)


@dataclass(frozen=True)
class Sample:
    """One image: where it is, who it shows, which camera took it, and in which modality.

    `pid` is the true identity; training code never uses it except to report clustering quality.
    """

    path: str
    pid: int
    camid: int
    modality: str
