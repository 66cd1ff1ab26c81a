"""`make mutation`: mutation testing of `reslab` with mutmut, and the score it must reach.

mutmut changes one small thing in the source at a time (``<`` to ``<=``, ``1.0`` to ``2.0``,
``"depth"`` to ``"XXdepthXX"``, ``and`` to ``or``, a call argument to ``None``, ...), runs the
unit tests that reach the changed function, and calls the change *killed* when a test fails.
A *surviving* mutant is a change no test notices: either a missing test, or a change that
cannot alter behaviour (an *equivalent* mutant). The equivalent ones are judged by hand and
listed, with the reason, in ``tests/mutation_equivalent.toml``; the score is

    (killed + timed out) / (all mutants - equivalent ones)

and must be at least 80 %. A mutant that makes a test run 30 times longer than it should
(mutmut's CPU-time limit; typically a loop that no longer ends, or a size that explodes) is
detected: the suite would not finish.

mutmut expects ``src/`` and ``tests/`` side by side, so this script stages a copy of the
package and of the unit tests in ``_build/mutation/`` and runs mutmut there. Tests that start
a fresh Python process, build the book or drive a browser cannot see a mutant (it lives in the
test process), so they are not copied.

Scope: the library layer of ``reslab`` (``SCOPE`` below): the argument checks, blocks,
stacks, conv nets, probes, path decomposition, recurrent cells, training loops, data, plots,
widgets and reproducibility helpers. The three chapter experiment drivers (``identity``,
``reframing``, ``sequences``) are exercised end to end by nbval, which compares every stored
output, and by the determinism tests; mutating them would add about 3,700 mutants (an hour
more on two cores) whose survivors are mostly figure labels.

Lines that only build an error message (``raise ...Error(...)``) are not mutated: the
validation audit (``tests/test_validation.py``) checks that every message names its argument.

    python tools/mutation.py                 # stage, run, report (about an hour on 2 cores)
    python tools/mutation.py --report-only   # report the last run again
    python tools/mutation.py --modules nets probes   # a part of the scope
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGE = ROOT / "_build" / "mutation"
EQUIVALENT_FILE = ROOT / "tests" / "mutation_equivalent.toml"
REPORT = ROOT / "MUTATION.md"
LOCK = ROOT / "_build" / "mutation.lock"
THRESHOLD = 0.80

SCOPE = ["_validate", "blocks", "nets", "conv", "probes", "paths", "train", "recurrent", "data", "plots", "widgets", "repro"]
# Unit tests that run in the test process (they see a mutant); the rest start fresh processes,
# need the built book or a browser, or check files outside the package.
EXCLUDED_TESTS = {"test_browser.py", "test_notebooks.py", "test_determinism.py", "test_hygiene.py", "test_vendor.py"}
# Chapter-claim tests that take 0.5 s or more each (a training run, a large sweep). mutmut runs
# every test that reaches a mutated function once per mutant, so these would cost hours; the
# claims they check run in `make unit` as usual, and nbval checks the chapters' outputs.
SLOW_TESTS = [
    "test_probes.py::test_random_jacobian_lognorm_spread_grows_with_depth",
    "test_highway_transformer.py::test_no_warmup_high_lr_post_ln_stalls_pre_ln_learns",
    "test_highway_transformer.py::test_pre_and_post_ln_gradient_norms_at_initialisation",
    "test_sequences.py::test_long_memory_reduced_claim_lstm_carries_where_rnn_forgets",
    "test_paths.py::test_fixes_bound_the_1000_block_forward_pass",
    "test_lesion.py::test_residual_degrades_gracefully_plain_collapses",
    "test_nets.py::test_measured_facts_of_the_syllabus",
    "test_identity.py::test_target_comparison_same_order",
    "test_identity.py::test_depth_sweep_central_claim",
    "test_reframing.py::test_central_claim_residual_beats_plain_at_largest_depth_for_every_seed",
    "test_reframing.py::test_sweep_result_structure",
    "test_reframing.py::test_figures_render",
]
DESELECT_HOOK = """

# Added by tools/mutation.py: leave the slow chapter-claim tests out of the mutation run.
_MUTATION_SLOW = set({slow!r})


def pytest_collection_modifyitems(config, items):
    slow = [item for item in items if item.nodeid.split("tests/", 1)[-1] in _MUTATION_SLOW]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if item not in slow]
"""

KILLED, SURVIVED, NO_TESTS, TIMEOUT, SUSPICIOUS = "killed", "survived", "no tests", "timeout", "suspicious"
STATUS = {None: "not checked", 1: KILLED, 3: KILLED, 0: SURVIVED, 5: NO_TESTS, 33: NO_TESTS, 36: TIMEOUT, -24: TIMEOUT, 24: TIMEOUT, -9: TIMEOUT}


def stage(modules: list[str]) -> None:
    """Fresh copy of the package and the in-process unit tests, and mutmut's configuration."""
    if STAGE.exists():
        shutil.rmtree(STAGE)
    (STAGE / "tests").mkdir(parents=True)
    shutil.copytree(ROOT / "code" / "src", STAGE / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for test in sorted((ROOT / "tests").glob("*.py")):
        if test.name not in EXCLUDED_TESTS:
            (STAGE / "tests" / test.name).write_bytes(_staged_test(test))
    only = ", ".join(f'"src/reslab/{m}.py"' for m in modules)
    (STAGE / "pyproject.toml").write_text(
        "[tool.mutmut]\n"
        'source_paths = ["src/reslab"]\n'
        f"only_mutate = [{only}]\n"
        # Error messages are checked by the validation audit, not mutated.
        'do_not_mutate_patterns = ["raise (TypeError|ValueError|RuntimeError)\\\\("]\n'
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning"]\n'
        'pytest_add_cli_args_test_selection = ["tests"]\n'
        "use_git_change_detection = false\n"
    )


def refresh_stage() -> None:
    """Bring the staged package and tests up to date, keeping mutmut's results (``--resume``)."""
    for src in (ROOT / "code" / "src" / "reslab").glob("*.py"):
        dst = STAGE / "src" / "reslab" / src.name
        if not dst.exists() or dst.read_bytes() != src.read_bytes():
            shutil.copy2(src, dst)
    for test in sorted((ROOT / "tests").glob("*.py")):
        if test.name not in EXCLUDED_TESTS:
            for dst in (STAGE / "tests" / test.name, STAGE / "mutants" / "tests" / test.name):
                if not dst.exists() or dst.read_bytes() != _staged_test(test):
                    dst.write_bytes(_staged_test(test))


def _staged_test(path: Path) -> bytes:
    text = path.read_bytes()
    if path.name == "conftest.py":
        text += DESELECT_HOOK.format(slow=sorted(SLOW_TESTS)).encode()
    return text


def run(children: int, names: list[str] = ()) -> int:
    """Run mutmut; 0 or 1 when the run completed, 2 when it stopped before testing mutants.

    mutmut first runs the selected tests without a mutant. If one fails there, it prints
    "Failed to run clean test" and exits with 1, the code it also uses for a completed run, so
    the output is read: otherwise the stale results would be reported as if re-tested.
    """
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0", MPLBACKEND="Agg")
    mutmut = Path(sys.executable).parent / "mutmut"
    done = subprocess.run([str(mutmut), "run", "--max-children", str(children), *names], cwd=STAGE, env=env, capture_output=True, text=True, errors="replace")
    if "Failed to run clean test" in done.stdout:
        failed = [line for line in done.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
        print("mutmut: a test fails without any mutant (in mutmut's order of the selected tests):", *failed, sep="\n  ", file=sys.stderr)
        return 2
    return done.returncode


# --- reading the results ----------------------------------------------------------------------

def _functions(source: str) -> dict[str, str]:
    """Source of every mutant and original function in a mutated module, by generated name,
    with the generated name itself replaced so that only the mutation differs."""
    out: dict[str, str] = {}
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and re.search(r"__mutmut_(\d+|orig)$", node.name):
            text = "\n".join(lines[node.lineno - 1 : node.end_lineno])
            out[node.name] = text.replace(node.name, "FUNCTION", 1)
    return out


def _change(orig: str, mutant: str) -> tuple[str, str]:
    """The changed source lines, before and after, stripped."""
    a, b = orig.splitlines(), mutant.splitlines()
    before, after = [], []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag != "equal":
            before += [x.strip() for x in a[i1:i2]]
            after += [x.strip() for x in b[j1:j2]]
    return " ".join(before), " ".join(after)


def load_results() -> list[dict]:
    """One record per mutant: module, function, status, and the changed line before/after."""
    records = []
    for meta in sorted((STAGE / "mutants" / "src" / "reslab").glob("*.py.meta")):
        module = meta.name[: -len(".py.meta")]
        exit_codes = json.loads(meta.read_text())["exit_code_by_key"]
        if not exit_codes:
            continue
        bodies = _functions((meta.parent / f"{module}.py").read_text())
        for key, code in sorted(exit_codes.items()):
            name = key.rsplit(".", 1)[1]
            orig_name = re.sub(r"__mutmut_\d+$", "__mutmut_orig", name)
            function = re.sub(r"__mutmut_\d+$", "", name).removeprefix("x_").removeprefix("xǁ").replace("ǁ", ".")
            before, after = _change(bodies.get(orig_name, ""), bodies.get(name, ""))
            records.append({"key": key, "module": module, "function": function,
                            "status": STATUS.get(code, SUSPICIOUS), "before": before, "after": after})
    return records


def load_equivalent() -> list[dict]:
    """Surviving mutants judged equivalent: function, before, after (stripped lines), why."""
    if not EQUIVALENT_FILE.exists():
        return []
    return tomllib.loads(EQUIVALENT_FILE.read_text())["mutant"]


def _is_equivalent(record: dict, equivalent: list[dict]) -> dict | None:
    for e in equivalent:
        if e["module"] == record["module"] and e["function"] == record["function"] and e["before"] == record["before"] and e["after"] == record["after"]:
            return e
    return None


def report(records: list[dict], modules: list[str]) -> float:
    equivalent = load_equivalent()
    records = [r for r in records if r["module"] in modules]
    by_module: dict[str, Counter] = defaultdict(Counter)
    survivors, judged = [], []
    for r in records:
        status = r["status"]
        if status not in (KILLED, TIMEOUT, "not checked"):
            e = _is_equivalent(r, equivalent)
            if e is not None:
                status = "equivalent"
                judged.append((r, e))
            else:
                survivors.append(r)
        by_module[r["module"]][status] += 1
    total = Counter()
    for c in by_module.values():
        total.update(c)
    counted = sum(total.values()) - total["equivalent"]
    detected = total[KILLED] + total[TIMEOUT]
    score = detected / counted if counted else 0.0

    lines = ["# Mutation testing", "",
             "Written by `make mutation` (`tools/mutation.py`, mutmut); see the script's docstring for the scope.", "",
             "| module | mutants | killed | timed out | equivalent | survived | no tests | not checked | score |", "|---|---|---|---|---|---|---|---|---|"]
    for m in modules:
        c = by_module.get(m, Counter())
        n = sum(c.values())
        denom = n - c["equivalent"]
        lines.append(f"| {m} | {n} | {c[KILLED]} | {c[TIMEOUT]} | {c['equivalent']} | {c[SURVIVED] + c[SUSPICIOUS]} | {c[NO_TESTS]} | {c['not checked']} | "
                     f"{100 * (c[KILLED] + c[TIMEOUT]) / denom:.1f} % |" if denom else f"| {m} | 0 | | | | | | | |")
    lines.append(f"| **all** | {sum(total.values())} | {total[KILLED]} | {total[TIMEOUT]} | {total['equivalent']} | {total[SURVIVED] + total[SUSPICIOUS]} | "
                 f"{total[NO_TESTS]} | {total['not checked']} | **{100 * score:.1f} %** |")
    lines += ["", f"Score = (killed + timed out) / (mutants - equivalent) = {detected} / {counted} = {100 * score:.1f} % (budget >= {100 * THRESHOLD:.0f} %).", ""]
    lines += ["## Surviving mutants judged equivalent", "", "Listed with the reason in `tests/mutation_equivalent.toml`.", "",
              "| function | before | after | why |", "|---|---|---|---|"]
    for r, e in judged:
        lines.append(f"| `{r['module']}.{r['function']}` | `{_cell(r['before'])}` | `{_cell(r['after'])}` | {e['why']} |")
    used = {id(e) for _, e in judged}
    stale = [e for e in equivalent if id(e) not in used and e["module"] in modules]
    if stale:
        lines += ["", f"{len(stale)} entries of `tests/mutation_equivalent.toml` match no surviving mutant (the code changed): "
                  + ", ".join(f"`{e['module']}.{e['function']}`" for e in stale) + "."]
    lines += ["", "## Other surviving mutants", "", "| function | status | before | after |", "|---|---|---|---|"]
    for r in survivors:
        lines.append(f"| `{r['module']}.{r['function']}` | {r['status']} | `{_cell(r['before'])}` | `{_cell(r['after'])}` |")
    REPORT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:len(modules) + 8]))
    print(f"{len(survivors)} surviving mutants not judged equivalent; the full list is in {REPORT.relative_to(ROOT)}")
    return score


def _cell(text: str) -> str:
    text = text.replace("|", "\\|").replace("`", "'")
    return text if len(text) <= 110 else text[:107] + "..."


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modules", nargs="+", default=SCOPE, choices=SCOPE, help="part of the scope to mutate")
    parser.add_argument("--children", type=int, default=os.cpu_count() or 1, help="parallel mutmut workers")
    parser.add_argument("--report-only", action="store_true", help="report the last run again")
    parser.add_argument("--resume", action="store_true", help="keep the last run's results; test new mutants and every survivor again")
    parser.add_argument("--survivors", action="store_true", help="print the last run's surviving mutants of --modules (not judged equivalent) and stop")
    args = parser.parse_args()
    if args.survivors:
        equivalent = load_equivalent()
        for r in load_results():
            if r["module"] in args.modules and r["status"] not in (KILLED, TIMEOUT, "not checked") and _is_equivalent(r, equivalent) is None:
                print(f"{r['key']}  [{r['status']}]\n    - {r['before']}\n    + {r['after']}")
        return 0
    if (args.resume or not args.report_only) and LOCK.exists() and _alive(int(LOCK.read_text() or 0)):
        print(f"a mutation run is in progress (pid {LOCK.read_text()}); read its results with --survivors or --report-only", file=sys.stderr)
        return 2
    if args.resume or not args.report_only:
        LOCK.parent.mkdir(parents=True, exist_ok=True)
        LOCK.write_text(str(os.getpid()))
    try:
        return _main(args)
    finally:
        if LOCK.exists() and LOCK.read_text() == str(os.getpid()):
            LOCK.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return pid > 0


def _main(args: argparse.Namespace) -> int:
    if args.resume:
        # Changed functions get fresh mutants, tested first; then every mutant that was not
        # killed before is tried again against the current tests.
        refresh_stage()
        before = {r["key"] for r in load_results() if r["status"] not in (KILLED, TIMEOUT, "not checked") and r["module"] in args.modules}
        if run(args.children) not in (0, 1):
            print("mutmut failed", file=sys.stderr)
            return 2
        again = sorted(before & {r["key"] for r in load_results() if r["status"] not in (KILLED, TIMEOUT)})
        print(f"re-testing {len(again)} earlier survivors against the current tests", flush=True)
        if again and run(args.children, again) not in (0, 1):
            print("mutmut failed", file=sys.stderr)
            return 2
    elif not args.report_only:
        stage(args.modules)
        code = run(args.children)
        if code not in (0, 1):
            print(f"mutmut failed with exit code {code}", file=sys.stderr)
            return 2
    records = load_results()
    if not records:
        print("no mutmut results in _build/mutation; run without --report-only first", file=sys.stderr)
        return 2
    score = report(records, args.modules)
    return 0 if score >= THRESHOLD else 1


if __name__ == "__main__":
    sys.exit(main())
