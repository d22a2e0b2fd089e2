"""parse_config on large, hostile or odd input: a size limit (what a ConfigMap holds), a bound
on the problems listed and on each problem's text, and a place (line/column or JSON path)
for problems that have no natural path. Issue 11 items 12 and 15 (config part)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sriovdp.errors import MAX_LISTED_PROBLEMS, ConfigError, ConfigProblem
from sriovdp.model.config import MAX_CONFIG_BYTES, MAX_RESOURCES, parse_config


def _doc(*resources: object, **top: object) -> str:
    return json.dumps({"resourceList": list(resources), **top}, ensure_ascii=False)


def _res(name: str = "pool", selectors: object = ({},), **keys: object) -> dict[str, Any]:
    return {"resourceName": name, "selectors": list(selectors)
            if isinstance(selectors, tuple) else selectors, **keys}


def _error(text: str | bytes, **kw: Any) -> ConfigError:
    with pytest.raises(ConfigError) as excinfo:
        parse_config(text, **kw)
    return excinfo.value


# --------------------------------------------------------------------------------------------
# Size


def test_parse_rejects_document_with_size_and_limit_when_larger_than_a_configmap() -> None:
    text = _doc(_res()).encode()
    text += b" " * (MAX_CONFIG_BYTES + 1 - len(text))
    assert [str(p) for p in _error(text).problems] == [
        ("the config is 1,048,577 bytes, larger than the 1,048,576 bytes (1 MiB) a ConfigMap"
         " can hold")
    ]


def test_parse_accepts_document_when_exactly_at_the_limit() -> None:
    text = _doc(_res())
    text += " " * (MAX_CONFIG_BYTES - len(text))
    assert parse_config(text).resources[0].name == "pool"


def test_parse_counts_utf8_bytes_when_given_text() -> None:
    text = _doc(_res(additionalInfo={"*": {"k": "é" * (MAX_CONFIG_BYTES // 2)}}))
    assert len(text) < MAX_CONFIG_BYTES < len(text.encode())
    assert "larger than the 1,048,576 bytes" in str(_error(text))


# --------------------------------------------------------------------------------------------
# How many problems are listed


def test_parse_lists_the_first_problems_then_a_count_when_there_are_many() -> None:
    error = _error(_doc(_res(selectors=({"vendors": ["x"] * 1000},))))
    assert len(error.problems) == MAX_LISTED_PROBLEMS + 1
    assert error.problems[0].path == "resourceList[0].selectors[0].vendors[0]"
    assert error.problems[19].path == "resourceList[0].selectors[0].vendors[19]"
    assert str(error.problems[-1]) == "... and 980 more problems (only the first 20 are listed)"


def test_parse_says_one_more_problem_when_exactly_one_is_left_out() -> None:
    error = _error(_doc(_res(selectors=({"vendors": ["x"] * 21},))))
    assert str(error.problems[-1]) == "... and 1 more problem (only the first 20 are listed)"


def test_parse_lists_every_problem_when_there_are_twenty() -> None:
    error = _error(_doc(_res(selectors=({"vendors": ["x"] * 20},))))
    assert len(error.problems) == 20 and error.problems[-1].path.endswith("vendors[19]")


def test_parse_lists_the_first_warnings_then_a_count_when_there_are_many() -> None:
    config = parse_config(_doc(_res(), **{f"extra{i}": 1 for i in range(100)}))
    assert len(config.warnings) == MAX_LISTED_PROBLEMS + 1
    assert str(config.warnings[-1]) == "... and 80 more warnings (only the first 20 are listed)"


def test_parse_counts_problems_of_every_kind_when_over_the_limit() -> None:
    resources = [_res("a.b", excludeTopology="y", selectors=({"drivers": [1]}, 7))] * 30
    error = _error(_doc(*resources))
    assert len(error.problems) == 21
    assert error.problems[-1].message.startswith("... and 100 more problems")


def test_error_keeps_its_list_when_it_is_given_a_listed_one() -> None:
    problems = [ConfigProblem(f"p{i}", "bad") for i in range(50)]
    once = ConfigError(problems)
    again = once.with_source("/etc/pcidp/config.json")
    assert once.problems == again.problems and len(again.problems) == 21
    assert str(again).startswith("invalid config /etc/pcidp/config.json:")


# --------------------------------------------------------------------------------------------
# How long one problem is


def test_problem_text_is_bounded_and_one_line_when_built_from_anything() -> None:
    problem = ConfigProblem("p" * 1000, "line\n" * 1000)
    assert len(problem.path) <= 200 and len(problem.message) <= 400
    assert "\n" not in str(problem)


@pytest.mark.parametrize(
    "selector",
    [
        pytest.param({"k" * 200_000: 1}, id="long-unknown-key"),
        pytest.param({"pfNames": ["p0#" + "1" * 200_000 + "-"]}, id="long-range"),
        pytest.param({"vendors": ["x" * 200_000]}, id="long-value"),
        pytest.param({"rootDevices": ["#" * 200_000]}, id="many-hashes"),
    ],
)
def test_parse_bounds_the_problem_text_when_the_input_is_long(selector: dict[str, Any]) -> None:
    error = _error(_doc(_res(selectors=(selector,))))
    assert len(str(error)) < 800


def test_parse_bounds_the_warning_text_when_a_top_key_is_long() -> None:
    [warning] = parse_config(_doc(_res(), **{"x" * 500_000: 1})).warnings
    assert len(str(warning)) < 300


# --------------------------------------------------------------------------------------------
# Where: problems without a natural JSON path


def test_parse_names_path_and_position_when_a_constant_is_nested() -> None:
    text = '{"resourceList": [\n  {"resourceName": "a", "selectors": [{}], "x": [1, NaN]}]}'
    assert [str(p) for p in _error(text).problems] == [
        "resourceList[0].x[1]: invalid JSON at line 2 column 53: NaN is not a JSON value"]


def test_parse_names_position_when_nesting_is_too_deep_for_the_decoder() -> None:
    text = '{"resourceList": [],\n "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    assert [str(p) for p in _error(text).problems] == [
        "invalid JSON at line 2 column 70: nested more than 64 levels deep"
    ]


def test_parse_names_path_and_position_when_nesting_is_deep_but_decodable() -> None:
    text = '{"resourceList": [], "x": ' + "[" * 70 + "]" * 70 + "}"
    [problem] = _error(text).problems
    assert problem.path.startswith("x[0][0][0]")
    assert problem.message == "invalid JSON at line 1 column 90: nested more than 64 levels deep"


def test_parse_accepts_nesting_when_at_the_depth_limit() -> None:
    text = '{"resourceList": [], "x": ' + "[" * 63 + "]" * 63 + "}"
    assert parse_config(text).resources == ()


def test_parse_ignores_brackets_in_strings_when_checking_depth() -> None:
    text = _doc(_res(additionalInfo={"*": {"k": "[" * 1000 + "{" * 1000}}))
    assert parse_config(text).resources[0].additional_info == {"*": {"k": "[" * 1000 + "{" * 1000}}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param(
            '{"resourceList": [{"resourceName": "a\\ud800", "selectors": [{}]}]}',
            "resourceList[0].resourceName: invalid Unicode: a lone surrogate"
            " (it cannot be sent as UTF-8)",
            id="value",
        ),
        pytest.param(
            '{"resourceList": [{"resourceName": "a", "selectors": [{"\\udfff": 1}]}]}',
            "resourceList[0].selectors[0]: invalid Unicode: a lone surrogate in a key"
            " (it cannot be sent as UTF-8)",
            id="key",
        ),
    ],
)
def test_parse_names_path_when_a_string_has_a_lone_surrogate(text: str, problem: str) -> None:
    assert [str(p) for p in _error(text).problems] == [problem]


def test_parse_accepts_surrogate_pair_when_escaped() -> None:
    text = '{"resourceList": [{"resourceName": "a", "selectors": [{}],' \
           ' "additionalInfo": {"*": {"k": "\\ud83d\\ude00"}}}]}'
    assert parse_config(text).resources[0].additional_info == {"*": {"k": "\U0001f600"}}


def test_parse_names_line_and_column_when_bytes_are_not_utf8() -> None:
    text = b'{"resourceList": [\n  {"resourceName": "\xff"}]}'
    assert [str(p) for p in _error(text).problems] == [
        "invalid UTF-8 at byte 39 (line 2 column 21)"
    ]


def test_parse_rejects_resource_list_when_longer_than_the_limit() -> None:
    resources = [_res(f"p{i}") for i in range(MAX_RESOURCES + 1)] + [_res("bad.name")]
    [problem] = _error(_doc(*resources)).problems
    assert str(problem) == ("resourceList: 1,002 resources; at most 1,000 are supported"
                            " (each is a socket and a kubelet registration)")


def test_parse_accepts_resource_list_when_at_the_limit() -> None:
    resources = [_res(f"p{i}") for i in range(MAX_RESOURCES)]
    assert len(parse_config(_doc(*resources)).resources) == MAX_RESOURCES
