"""One reader of field types (bench/core/field_values.py) behind two callers' messages: a bench.toml value
("where must be ..., got ...") and a method parameter on the command line ("bad value ... expected ...")."""
import pytest

from bench.config import check_value
from bench.core.errors import BenchError
from bench.methods.registry import parse_variant


@pytest.mark.parametrize("section, key, value, message", [
    ("data", "split", [0.5, "x", 0.5], "--x[1] must be a number, got 'x'"),
    ("data", "split", 0.5, "--x must be a list, got 0.5"),
    ("data", "grayscale", 1, "--x must be true or false, got 1"),
    ("execution", "num_gpus", "all", "--x must be a number or 'auto', got 'all'"),
    ("train", "lr", float("inf"), "--x must be a finite number"),
])
def test_a_config_value_of_the_wrong_type_is_named_with_its_place(section, key, value, message):
    with pytest.raises(BenchError) as err:
        check_value(section, key, value, "--x")
    assert str(err.value).startswith(message)


def test_config_values_keep_their_types():
    assert check_value("data", "split", [0.5, 0.25, 0.25], "--x") == (0.5, 0.25, 0.25)
    assert check_value("train", "lr", 1, "--x") == 1.0 and isinstance(check_value("train", "lr", 1, "--x"), float)
    assert check_value("execution", "num_gpus", "auto", "--x") == "auto"


@pytest.mark.parametrize("variant, message", [
    ("drift:delta=0.1/x", "bad value 'x' for drift:delta; expected float"),
    ("drift:target=noise", "bad value 'noise' for drift:target; expected one of eps, shifted"),
    ("fgscore:match_std=yes", "bad value 'yes' for fgscore:match_std; expected true or false"),
    ("fgscore:n_refs=2.5", "bad value '2.5' for fgscore:n_refs; expected int"),
])
def test_a_method_parameter_of_the_wrong_type_is_named(variant, message):
    with pytest.raises(BenchError, match=message):
        parse_variant(variant)


def test_method_parameters_are_parsed_into_their_types():
    _, params = parse_variant("drift:delta=0.1/-0.2")
    assert params.delta == (0.1, -0.2)
    _, params = parse_variant("fgscore:match_std=TRUE,n_refs=8")
    assert params.match_std is True and params.n_refs == 8
