"""Configs check themselves: field ranges, then validate(), children before parents; a nested
message names the key from the root once; help text comes from the fields."""
from __future__ import annotations

import dataclasses
import typing

import pytest

from megatron_snow.config import Config, ConfigError, load_config, setting, settings_help


@dataclasses.dataclass
class Window(Config):
    first: int = setting(1, help="first line", range=">= 1")
    last: int = setting(5, help="last line", range=">= 1")

    def validate(self) -> None:
        if self.first > self.last:
            raise ConfigError(f"{self.key('first')} ({self.first}) must not exceed {self.key('last')} ({self.last})")


@dataclasses.dataclass
class Job(Config):
    name: str = setting("job", help="what it is called")
    window: Window = setting(help="the lines", factory=Window)
    windows: list[Window] = setting(help="more lines", factory=list)

    def validate(self) -> None:
        if self.window.last > 100:
            raise ConfigError(f"{self.key('window.last')}: at most 100 for a job, got {self.window.last}")


def test_a_range_miss_names_the_key_from_the_root_once():
    with pytest.raises(ConfigError, match=r"^window\.first=0 is out of range >= 1$"):
        load_config(Job, None, ["window.first=0"])
    with pytest.raises(ConfigError, match=r"^windows\[1\]\.last=0 is out of range >= 1$"):
        load_config(Job, None, ["windows=[{}, {last: 0}]"])
    with pytest.raises(ConfigError, match=r"^first=0 is out of range >= 1$"):
        Window(first=0)  # built directly: the key relative to the class


def test_a_rule_naming_several_keys_names_each_from_the_root():
    with pytest.raises(ConfigError, match=r"^window\.first \(7\) must not exceed window\.last \(5\)$"):
        load_config(Job, None, ["window.first=7"])
    with pytest.raises(ConfigError, match=r"^first \(7\) must not exceed last \(5\)$"):
        Window(first=7)


def test_children_are_checked_before_their_parent():
    # both the child's rule and the parent's would fail: the child's comes first
    with pytest.raises(ConfigError, match=r"^window\.first \(200\) must not exceed window\.last \(150\)$"):
        load_config(Job, None, ["window.first=200", "window.last=150"])
    with pytest.raises(ConfigError, match=r"^window\.last: at most 100 for a job, got 150$"):
        load_config(Job, None, ["window.last=150"])


def test_help_comes_from_the_fields():
    text = "\n".join(settings_help(Job))
    assert "  window.first = 1    first line  [range >= 1]" in text
    assert "  windows = []    more lines" in text and "  windows[].last = 5    last line  [range >= 1]" in text


def _config_classes(root: type) -> set[type]:
    found, todo = set(), [root]
    while todo:
        cls = todo.pop()
        if cls in found or not dataclasses.is_dataclass(cls):
            continue
        found.add(cls)
        for tp in typing.get_type_hints(cls).values():
            todo += [tp, *typing.get_args(tp)]
    return found


def test_the_step_configs_declare_help_and_ranges_on_their_fields():
    from megatron_snow.ablation import AblationConfig
    from megatron_snow.evaluate.cli import EvalConfig
    from megatron_snow.phase1.pipeline import Phase1Config
    from megatron_snow.phase2.alignment import AlignmentConfig
    from megatron_snow.phase2.annotator import TrainAnnotatorConfig
    from megatron_snow.phase2.scoring import AnnotateConfig
    from megatron_snow.phase2.selection import SelectConfig
    from megatron_snow.phase2.tiny_encoder import TinyEncoderConfig
    from megatron_snow.synthesis.generate import SynthesizeConfig
    from megatron_snow.synthesis.mixing import MixConfig
    from megatron_snow.tokenization.build_index import BuildIndexConfig
    from megatron_snow.tokenization.train import TrainTokenizerConfig
    from megatron_snow.training.config import TrainConfig

    roots = (AblationConfig, EvalConfig, Phase1Config, AlignmentConfig, TrainAnnotatorConfig, AnnotateConfig,
             SelectConfig, TinyEncoderConfig, SynthesizeConfig, MixConfig, BuildIndexConfig, TrainTokenizerConfig,
             TrainConfig)
    for cls in set().union(*(_config_classes(r) for r in roots)):
        if not issubclass(cls, Config):
            continue
        assert not hasattr(cls, "RANGES"), f"{cls.__name__}: a range belongs on its field (setting(range=...))"
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help text"
        required = [f for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if not required:
            cls()  # the defaults pass the class's own checks
