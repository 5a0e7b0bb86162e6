"""A loaded model's logged requirements and Python against this environment (tracking.environment_mismatches),
checked here instead of by MLflow's slower scan of every installed package."""

import sys
from importlib import metadata

from mlgate.adapters.tracking import environment_mismatches

RUNNING = f"{sys.version_info.major}.{sys.version_info.minor}"


def test_the_pins_this_environment_holds_are_no_mismatch():
    pins = [f"{name}=={metadata.version(name)}" for name in ("pandas", "numpy", "PyYAML")]
    assert environment_mismatches(pins, f"{RUNNING}.0") == []


def test_a_pin_outside_the_installed_version_names_both():
    installed = metadata.version("pandas")
    assert environment_mismatches(["pandas==0.1.0"], None) == [
        f"the model requires pandas==0.1.0, this environment has pandas {installed}"
    ]


def test_a_missing_package_is_named_and_specifiers_are_honoured():
    problems = environment_mismatches(["no-such-package-mlgate-test==1.0", "numpy>=1", "pandas<1"], None)
    assert problems[0] == "the model requires no-such-package-mlgate-test==1.0, which is not installed"
    assert len(problems) == 2 and problems[1].startswith("the model requires pandas<1, this environment has pandas")


def test_comments_options_paths_and_other_platforms_are_not_compared():
    lines = [
        "",
        "# logged by mlgate",
        "-r base.txt",
        "./wheels/private-1.0-py3-none-any.whl",
        'no-such-package-mlgate-test==1.0; python_version < "3"',
        f"numpy=={metadata.version('numpy')}  # the array library",
    ]
    assert environment_mismatches(lines, None) == []


def test_another_python_minor_version_is_named_and_a_micro_version_is_not():
    assert environment_mismatches([], f"{RUNNING}.99") == []
    assert environment_mismatches([], "2.7.18") == [
        f"the model was logged with Python 2.7.18, this is Python {RUNNING}"
    ]
