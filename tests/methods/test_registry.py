"""The method table: explicit, typed options, modifiers, `--list_methods` and the docs."""

from __future__ import annotations

import dataclasses
import os
import pkgutil
import subprocess
import sys

import pytest

from keras_distill import methods
from keras_distill.methods import registry

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_explicit_table_is_the_registry_after_importing_everything():
    """Importing the package, every loss, the recipes and the benchmarks registers nothing."""
    code = ("import keras_distill, keras_distill.losses, recipes.distill, benchmarks.accuracy\n"
            "from keras_distill import methods\n"
            "print(methods.available() == sorted(methods.METHODS), methods.available())")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=300,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("True"), result.stdout
    assert set(methods.METHODS) <= set(methods.available())


def test_every_builder_file_has_a_line_in_the_table():
    modules = {name for _, name, _ in pkgutil.iter_modules(methods.__path__)} - {"registry"}
    used = {entry.builder.__module__ for entry in methods.METHODS.values()}
    used |= {modifier.transform.__module__ for modifier in methods.MODIFIERS.values()}
    used = {module.rsplit(".", 1)[1] for module in used}
    assert modules == used
    for name, entry in methods.METHODS.items():
        assert isinstance(entry, methods.Method), name
        assert dataclasses.is_dataclass(entry.options), name
        assert entry.options.__dataclass_params__.frozen, name
        assert entry.description and entry.page, name


def test_every_option_has_a_default_the_dataclass_accepts():
    for name, entry in methods.METHODS.items():
        defaults = entry.options()  # the defaults pass their own validation
        assert methods.parse_options(name, {}) == defaults
        for key, kind, default in methods.option_fields(entry.options):
            assert default is not dataclasses.MISSING, (name, key)
            assert kind, (name, key)


def test_unknown_option_names_the_key_a_close_match_and_the_valid_keys():
    with pytest.raises(methods.OptionError) as error:
        methods.parse_options("kd", {"temprature": "2"})
    message = str(error.value)
    assert "\n" not in message
    assert ("--method_options ['temprature'] are not read by --method=kd, which reads "
            "['temperature', 'kd_weight', 'ce_weight']: check the spelling.") in message
    assert "'temprature': did you mean 'temperature'?" in message
    assert ("Options (name: type = default): temperature: float = 4.0, kd_weight: float = 0.9, "
            "ce_weight: float = 0.1.") in message


@pytest.mark.parametrize("options, expected", [
    ({"temperature": "0"}, r"temperature=0.0: expected a float > 0"),
    ({"temperature": "-1"}, r"temperature=-1.0: expected a float > 0"),
    ({"temperature": "abc"}, r"temperature='abc' of --method=kd: expected float"),
    ({"kd_weight": "-0.5"}, r"kd_weight=-0.5: expected a float >= 0"),
])
def test_bad_values_name_the_key_the_value_and_what_is_expected(options, expected):
    with pytest.raises(methods.OptionError, match=expected) as error:
        methods.parse_options("kd", options)
    assert "\n" not in str(error.value) and "--method=kd" in str(error.value)


def test_bad_values_of_other_types_and_choices():
    with pytest.raises(methods.OptionError, match=r"members=1.*DML needs members >= 2|"
                       r"DML needs members >= 2, got 1"):
        methods.parse_options("dml", {"members": "1"})
    with pytest.raises(methods.OptionError, match=r"init_epochs='2.5' of --method=fitnet_two_stage: "
                       r"expected int \| None"):
        methods.parse_options("fitnet_two_stage", {"init_epochs": "2.5"})
    with pytest.raises(methods.OptionError, match=r"mode='both': expected 'two_stage' or 'joint'"):
        methods.parse_options("fsp", {"mode": "both"})
    with pytest.raises(methods.OptionError, match=r"mode='nope': expected one of \('full'"):
        methods.parse_options("tang", {"mode": "nope"})
    with pytest.raises(methods.OptionError, match=r"\['mode'\] are not read by --method=tang_"):
        methods.parse_options("tang_full", {"mode": "full"})  # the mode is the method's name


def test_values_are_converted_to_the_declared_types():
    options = methods.parse_options("dkd", {"beta": "2", "warmup_epochs": "5",
                                            "temperature": 3})
    assert (options.beta, options.warmup_epochs, options.temperature) == (2.0, 5.0, 3.0)
    assert isinstance(options.temperature, float)
    assert methods.parse_options("dkd", {"beta": "none"}).beta is None
    assert methods.parse_options("cc", {"embed_dim": "64", "order": "3"}).embed_dim == 64
    crd = methods.parse_options("crd", {"num_negatives": 4096.0})
    assert crd.num_negatives == 4096 and isinstance(crd.num_negatives, int)


@pytest.mark.parametrize("text, expected", [
    ("true", True), ("True", True), ("1", True), ("yes", True),
    ("false", False), ("0", False), ("no", False), (True, True), (0, False),
])
def test_bool_options(text, expected):
    @dataclasses.dataclass(frozen=True)
    class Flags:
        enabled: bool = False

    assert registry.parse(Flags, {"enabled": text}).enabled is expected


def test_bool_options_refuse_other_words():
    @dataclasses.dataclass(frozen=True)
    class Flags:
        enabled: bool = False

    with pytest.raises(methods.OptionError, match=r"enabled='maybe': expected bool"):
        registry.parse(Flags, {"enabled": "maybe"})


def test_tuple_options_from_plus_joined_text_or_a_sequence():
    options = methods.parse_options("at", {"teacher_taps": "stage1+stage2",
                                           "student_taps": ["a", "b"]})
    assert options.teacher_taps == ("stage1", "stage2") and options.student_taps == ("a", "b")
    assert methods.parse_options("at", {}).teacher_taps is None
    plus = methods.parse_options("kd_plus", {"plus_terms": "kd"})
    assert plus.plus_terms == ("kd",)
    with pytest.raises(methods.OptionError, match=r"teacher_taps=3 of --method=at: "
                                                  r"expected str\+\.\.\. \| None"):
        methods.parse_options("at", {"teacher_taps": 3})


def test_a_modified_method_takes_its_base_options_and_the_modifiers():
    options = methods.parse_options("dkd_plus", {"beta": "2", "plus_source": "noise"})
    assert (options.beta, options.plus_source, options.temperature) == (2.0, "noise", 4.0)
    assert methods.method("dkd_plus").page == "dkd.md"
    with pytest.raises(methods.OptionError, match="Unknown source of extra inputs 'dreams'"):
        methods.parse_options("dkd_plus", {"plus_source": "dreams"})
    with pytest.raises(methods.OptionError, match=r"\['plus_sorce'\] are not read.*"
                                                  r"'plus_sorce': did you mean 'plus_source'"):
        methods.parse_options("kd_plus", {"plus_sorce": "noise"})


def test_builders_receive_the_typed_options():
    seen = []

    def builder(context):
        seen.append(context.options)
        return methods.MethodSpec()

    table = methods.Registry({"mine": methods.Method(builder, methods.kd.KDOptions)})
    table.build("mine", methods.MethodContext(None, None, 3, options={"temperature": "2"}))
    assert seen == [methods.kd.KDOptions(temperature=2.0)]
    with pytest.raises(methods.OptionError):
        table.build("mine", methods.MethodContext(None, None, 3, options={"t": "2"}))
    assert len(seen) == 1  # refused before the builder runs


def test_unknown_methods_suggest_close_names_and_the_plus():
    with pytest.raises(ValueError, match=r"Unknown method 'kd_pluss'.*Did you mean.*'_plus'"):
        methods.build("kd_pluss", methods.MethodContext(None, None, 3))


def test_registering_your_own_method_leaves_the_table_alone():
    table = methods.Registry(methods.METHODS, methods.MODIFIERS)
    table.register("mine", methods.Method(lambda context: methods.MethodSpec()))
    assert "mine" in table.available() and "mine" not in methods.METHODS
    with pytest.raises(ValueError, match="already in the table"):
        table.register("kd", methods.Method(lambda context: methods.MethodSpec()))


def test_listing_shows_each_method_with_its_options():
    text = methods.listing()
    for name, entry in methods.METHODS.items():
        assert f"\n{name:24s} {entry.description}" in "\n" + text
    assert "options: temperature: float = 4.0, kd_weight: float = 0.9," in text
    assert "ce_weight: float = 0.1" in text
    assert "teacher_taps: str+... | None = None" in text
    assert "<method>_plus" in text and "plus_source: str = 'mixup'" in text
    assert all(len(line) <= 100 for line in text.splitlines() if line.startswith(" "))


def test_docs_have_a_page_and_an_index_line_for_every_method():
    with open(os.path.join(REPO, "docs", "index.md")) as handle:
        index = handle.read()
    for name, entry in methods.METHODS.items():
        page = os.path.join(REPO, "docs", "methods", entry.page)
        assert os.path.exists(page), f"method {name!r}: docs/methods/{entry.page} is missing"
        assert f"(methods/{entry.page})" in index, \
            f"method {name!r}: docs/index.md has no line linking methods/{entry.page}"
