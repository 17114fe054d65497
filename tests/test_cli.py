"""The one CLI dialect: same flag names everywhere, old spellings noted, "did you mean" on typos."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from edgeode.cli import COMMANDS, build_parser, main
from edgeode.errors import did_you_mean

ROOT = Path(__file__).resolve().parents[1]

#: short flag -> the one long name it must belong to, in every command
SHORT = {"-o": "--out", "-q": "--quiet", "-d": "--device"}
#: old spellings: still accepted, never shown in --help
DEPRECATED = ("--output", "--force")


def edgeode(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeode", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def _parsers() -> dict[str, argparse.ArgumentParser]:
    """Every (sub)command parser by its prog name, e.g. 'edgeode devices calibrate'."""
    out: dict[str, argparse.ArgumentParser] = {}

    def walk(p: argparse.ArgumentParser) -> None:
        out[p.prog] = p
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    walk(sub)

    walk(build_parser())
    return out


def test_every_command_speaks_one_dialect():
    parsers = _parsers()
    assert len(parsers) > len(COMMANDS) // 2
    for prog, p in parsers.items():
        for action in p._actions:
            opts = set(action.option_strings)
            for short, long in SHORT.items():
                if short in opts:
                    assert long in opts, f"{prog}: {short} is not {long}"
            if opts & set(DEPRECATED):
                assert action.help == argparse.SUPPRESS, f"{prog}: {opts} shown in --help"
                assert len(opts) == 1
            if "--out" in opts:
                assert action.dest == "out"
            if "--json" in opts:
                assert action.nargs == 0


@pytest.mark.parametrize("word,names,expected", [
    ("profle", COMMANDS, "profile"),
    ("pi4", ["pi-4b", "pi-5", "pi-zero-2w", "pi-3b-plus"], "pi-4b"),
    ("PI_4B", ["pi-4b", "pi-5"], "pi-4b"),
    ("onnx", ["auto", "onnxruntime", "litert", "tflite-runtime"], "onnxruntime"),
    ("rk5", ["euler", "midpoint", "heun", "rk4", "rk4_38"], "rk4"),
    ("odnet", ["odenet", "rknet", "resnet", "vgg", "spiral"], "odenet"),
])
def test_did_you_mean(word, names, expected):
    assert did_you_mean(word, names) == f" (did you mean {expected!r}?)"


def test_did_you_mean_stays_quiet_when_nothing_is_close():
    assert did_you_mean("zzzz", ["pi-4b", "pi-5"]) == ""
    assert did_you_mean("", ["pi-4b"]) == ""


def test_misspelt_subcommand_suggests_the_command():
    proc = edgeode("profle")
    assert proc.returncode != 0
    assert "did you mean 'profile'?" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_misspelt_device_suggests_the_profile(tmp_path):
    # the device is checked while parsing, before the bundle is looked at
    proc = edgeode("profile", str(tmp_path / "no-bundle"), "--device", "pi4")
    assert proc.returncode != 0
    assert "did you mean 'pi-4b'?" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_names_in_library_errors_suggest():
    from edgeode.devices.profiles import load_profile
    from edgeode.errors import DeviceError, TableauError
    from edgeode.tableaus import get_tableau

    with pytest.raises(DeviceError, match=r"did you mean 'pi-zero-2w'\?"):
        load_profile("pi-zero2w")
    with pytest.raises(TableauError, match=r"did you mean 'midpoint'\?"):
        get_tableau("midpiont")


def test_top_level_help_lists_each_command_once_in_flow_order(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    listed = [line.split()[0] for line in text.splitlines() if line.startswith("    ") and line.split()[0] in COMMANDS]
    assert len(listed) == len(set(listed)) >= 8
    assert listed == [c for c in COMMANDS if c in listed]
    assert listed.index("train") < listed.index("export") < listed.index("run") < listed.index("profile") \
        < listed.index("pack")


def test_old_spelling_still_works_with_a_note(capsys):
    parser = build_parser()
    args = parser.parse_args(["pack", "b", "--device", "pi-4b", "--output", "dir", "--force"])
    assert (args.out, args.overwrite) == ("dir", True)
    err = capsys.readouterr().err
    assert "--output is deprecated; use -o/--out" in err and "--force is deprecated; use --overwrite" in err
    args = parser.parse_args(["pack", "b", "-d", "pi-4b", "-o", "dir"])
    assert (args.out, args.overwrite) == ("dir", False)
    assert capsys.readouterr().err == ""


def test_required_out_is_still_required():
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["export", "run-dir"])
    assert info.value.code == 2


def test_progress_in_a_log_is_one_clean_line_per_stage():
    import io

    from edgeode.progress import Stages

    log = io.StringIO()  # not a terminal
    with Stages("export", 2, stream=log) as bar:
        for name in ("onnx/field.onnx", "onnx/fused.onnx"):
            bar.set_postfix_str(name)
            bar.update()
    lines = log.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines[:2]] == ["export: [1/2] onnx/field.onnx", "export: [2/2] onnx/fused.onnx"]
    assert lines[2].startswith("export: done in") and "\r" not in log.getvalue()
    quiet = io.StringIO()
    with Stages("export", 2, enabled=False, stream=quiet) as bar:
        bar.set_description("x")
        bar.update()
    assert quiet.getvalue() == ""


def test_an_export_in_two_batches_counts_against_its_announced_total(tmp_path, capsys):
    """An int8 export builds its float files, then their int8 twins: announced up front (``expect``), the count
    reads N/total from the first file (it read 7/7, then 8/10)."""
    from edgeode.export.bundle_writer import staged_bundle

    with pytest.raises(RuntimeError), staged_bundle(tmp_path / "b", False, None, {}) as bundle:
        bundle.expect(10)
        bundle.build([])  # a batch never lowers the announced total
        assert bundle.bar.total == 10
        bundle.bar.set_description("onnx/field.onnx")
        raise RuntimeError("stop here")
    assert "export: [1/10] onnx/field.onnx" in capsys.readouterr().err


def test_ctrl_c_while_the_commands_import_is_one_line_not_a_traceback():
    """A real SIGINT delivered while ``main`` builds its parser (importing the command modules, the first
    ~0.1 s of every command) ends with one line and exit 130, as a Ctrl-C later in the run does."""
    code = f"""
import importlib.abc, os, signal, sys
sys.path.insert(0, {str(ROOT)!r})
class Interrupt(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "edgeode.commands.export":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)  # the KeyboardInterrupt surfaces inside this import
        return None
sys.meta_path.insert(0, Interrupt())
from edgeode.cli import main
sys.exit(main(["devices"]))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip().splitlines() == ["edgeode: interrupted"] and "Traceback" not in proc.stderr


def test_work_that_fails_stops_its_progress_report(tmp_path, capsys):
    """A failed stage ends the report without a ``done`` line (the error says what happened), and an
    export that fails mid-way closes its progress report on the way out (nothing is left behind)."""
    import io

    from edgeode.export.bundle_writer import staged_bundle
    from edgeode.progress import Stages

    log = io.StringIO()
    with pytest.raises(RuntimeError), Stages("export", 2, stream=log) as bar:
        bar.set_description("onnx/field.onnx")
        raise RuntimeError("converter failed")
    assert "done" not in log.getvalue() and log.getvalue().startswith("export: [1/2] onnx/field.onnx")

    out = tmp_path / "bundle"
    with pytest.raises(RuntimeError, match="parity"), staged_bundle(out, False, None, {}) as bundle:
        bundle.bar.total = 2
        bundle.bar.set_description("onnx/field.onnx")
        raise RuntimeError("parity gate failed")
    err = capsys.readouterr().err
    assert "export: [1/2] onnx/field.onnx" in err and "done in" not in err
    assert not bundle.bar.enabled and not out.exists() and list(tmp_path.iterdir()) == []
