"""pyproject.toml's dependency floors are at least the first releases with the features the code uses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# (what the code does, a pattern that finds it in src/, the package, its first release that can do it)
FEATURES = [
    ("torch.optim.Adam(fused=True) on CPU (2.3 fuses on cuda/xpu only)", r"Adam\([^\n]*fused=True", "torch", (2, 4)),
    ("torch.onnx.export(..., dynamo=False) (the keyword is new in 2.4)", r"dynamo=(True|False)", "torch", (2, 4)),
    ("PIL.Image.Resampling", r"Image\.Resampling\.", "Pillow", (9, 1)),
]


def _floors() -> dict[str, tuple[int, ...]]:
    """package -> its `>=` floor, from the dependency strings of pyproject.toml."""
    text = (ROOT / "pyproject.toml").read_text()
    found = re.findall(r'"([A-Za-z0-9_.-]+)>=([0-9.]+)', text)
    return {name.lower(): tuple(int(p) for p in version.split(".")) for name, version in found}


def _used(pattern: str) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in sorted((ROOT / "src").rglob("*.py")) if re.search(pattern, p.read_text())]


@pytest.mark.parametrize("feature, pattern, package, first", FEATURES, ids=[f[0] for f in FEATURES])
def test_dependency_floor_covers_a_feature_the_code_uses(feature, pattern, package, first):
    users = _used(pattern)
    if not users:
        pytest.skip(f"the code no longer uses {feature}")
    floor = _floors().get(package.lower())
    assert floor is not None, f"pyproject.toml has no {package}>= floor"
    assert floor >= first, (f"{', '.join(users)} use(s) {feature}, first in {package} "
                            f"{'.'.join(map(str, first))}, but pyproject.toml allows {'.'.join(map(str, floor))}")
