"""Every command: --help with examples and --quiet, and a one-line reason with exit 2 on bad input."""

from __future__ import annotations

import pytest

from kidney_tf.cli.main import build_parser, main

COMMANDS = [
    ["demo"],
    ["data", "phantom"],
    ["data", "crop"],
    ["data", "verify"],
    ["data", "figures"],
    ["train"],
    ["evaluate"],
    ["explain"],
    ["compare"],
    ["export"],
    ["reproduce"],
    ["benchmark"],
]


def _subparser(parser, words):
    for word in words:
        action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        parser = action.choices[word]
    return parser


@pytest.mark.parametrize("words", COMMANDS, ids=" ".join)
def test_help_has_examples_and_quiet(words):
    help_text = _subparser(build_parser(), words).format_help()
    assert "example" in help_text.lower()
    assert "--quiet" in help_text


MISSING = "/nonexistent/kidney_tf_input"


@pytest.mark.parametrize(
    "argv",
    [
        ["data", "crop", "--src", MISSING, "--dst", "{tmp}/out"],
        ["data", "verify", "--root", MISSING, "--manifest", "ct_kidney"],
        ["data", "figures", "--data", MISSING, "--out", "{tmp}/figs"],
        ["train", "--data", MISSING, "--out", "{tmp}/run", "--weights", "none"],
        ["evaluate", "--model", MISSING + ".keras", "--data", MISSING, "--out", "{tmp}/rep"],
        ["explain", "--model", MISSING + ".keras", "--image", MISSING + ".png", "--out", "{tmp}/e"],
        ["compare", MISSING + "_a", MISSING + "_b", "--out", "{tmp}/cmp"],
        ["export", "--model", MISSING + ".keras", "--out", "{tmp}/export/1"],
        ["reproduce", "kidney-cam-fostering", "--data", MISSING, "--out", "{tmp}/repro"],
    ],
    ids=lambda argv: " ".join(argv[:2]),
)
def test_missing_input_gives_one_line_reason(argv, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if "error:" in line]
    assert errors == [err[-1]], err  # progress lines may come first; the reason is one line
    assert MISSING in err[-1]
    assert err[-1].startswith(f"kidney-tf {' '.join(argv[: 2 if argv[0] == 'data' else 1])}: ")


def test_bad_argument_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", "x", "--out", "y", "--arch", "vgg16"])
    assert exc.value.code == 2
    assert "invalid choice: 'vgg16'" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["train", "reproduce", "demo"])
def test_every_fostering_weight_has_a_flag(command):
    from kidney_tf.recipes import FOSTERING_WEIGHTS

    help_text = _subparser(build_parser(), [command]).format_help()
    for name in FOSTERING_WEIGHTS:
        assert "--" + name.replace("_", "-") in help_text, name


def test_alive_weight_flag_reaches_the_training_config():
    from kidney_tf.cli.train import config_from_args

    args = ["train", "--data", "d", "--out", "o", "--alive-weight", "2", "--cam-weight", "0.1"]
    config = config_from_args(build_parser().parse_args(args))
    assert (config.alive_weight, config.cam_weight) == (2.0, 0.1)
