"""Published compression methods re-implemented as ``Strategy`` builders (paper reproduction, issue 8).

``build_baseline_strategy(name, model, info, sha256, calib_tokens, config)``; names in ``BASELINES``.
"""

from core.baselines.config import BaselineConfig
from core.baselines.registry import BASELINES, BaselineSpec, baseline_names, baseline_spec, build_baseline_strategy

__all__ = ["BASELINES", "BaselineConfig", "BaselineSpec", "baseline_names", "baseline_spec", "build_baseline_strategy"]
