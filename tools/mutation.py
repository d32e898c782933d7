"""Mutation testing of mlmkit with mutmut: how many deliberately broken versions of the code the tests catch.

Two sets, each run in its own work folder (``.mutation/<set>/``, kept between runs so that a second
run only tests what has no result yet):

* ``masking``: every module of ``src/mlmkit/masking/`` against the fast tests (``-m "not slow"``);
* ``training``: ``training/checkpoint.py`` and ``training/pretrain.py`` against the tests of ``tests/unit``
  and ``tests/robustness`` plus the in-process training tests of :data:`TRAINING_TESTS` (the pre-training
  loop is only reached by tests that train; tests that launch ``mlmkit`` in a subprocess are left out,
  because a subprocess imports the unmutated package and could never kill a mutant).

    python tools/mutation.py masking                    # or: make mutation SET=masking
    python tools/mutation.py training --max-children 2
    python tools/mutation.py masking --only 'mlmkit.masking.span.*'
    python tools/mutation.py masking --rerun-survivors  # after adding tests: test the survivors again
    python tools/mutation.py masking --sample 700 --tests-at REV   # a seeded random sample, tests of REV
    python tools/mutation.py masking --sample 700 --rerun-survivors # the same sample's survivors, current tests
    python tools/mutation.py masking --report           # the table only
    python tools/mutation.py masking --try NAME tests/unit/test_x.py   # does this test kill that mutant?
    python tools/mutation.py masking --survivors span.py                 # names of the surviving mutants

The table counts, per module, the mutants the tests killed (a failing test, a timeout or a crash),
those that survived, and those no selected test reaches; the score is killed / all mutants.
``mutmut show NAME`` (run in the work folder) prints one mutant's diff.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: what a work folder needs besides the package: the tests, their fixtures and the packaged recipes
COPIED = ("src", "tests", "recipes", "pyproject.toml", ".importlinter")

#: in-process tests that train (about a minute in all on 2 cores), besides the fast tests of tests/unit and
#: tests/robustness; kill -9, SIGINT, SIGTERM and 2-process tests launch subprocesses, so they are deselected
TRAINING_TESTS = [
    "tests/unit",
    "tests/robustness",
    "tests/integration/test_pretrain_loop.py",
    "tests/integration/test_resume.py",
    "tests/integration/test_remembered_evaluation.py",
    "tests/teeth/test_training_promises.py",
    "tests/teeth/test_resume_with_state.py",
    "tests/teeth/test_strategies_in_the_loop.py::test_random_realizes_the_scheduled_ratio_per_step",
]
SUBPROCESS_TESTS = "not kill_9 and not sigint and not sigterm and not two_process"
SETS = {
    "masking": {
        "only_mutate": ["src/mlmkit/masking/*"],
        "tests": ["tests/"],
        "marker": "not slow",
    },
    "training": {
        "only_mutate": ["src/mlmkit/training/checkpoint.py", "src/mlmkit/training/pretrain.py"],
        "tests": TRAINING_TESTS,
        "marker": "",
        "deselect": SUBPROCESS_TESTS,
    },
}
#: the tests run offline, one thread per process (mutmut runs several at once)
TEST_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false"}
#: mutmut's exit codes, grouped: a mutant is killed when the tests fail, time out or crash on it
KILLED = {1, 3, 36, 37, -24, 24, 152, 255, -11, -9}
SURVIVED = {0}
NOT_REACHED = {5, 33}


def setup_cfg(name: str) -> str:
    """The ``[mutmut]`` section of the work folder for the set ``name``."""
    spec = SETS[name]
    cli_args = ["-p", "no:cacheprovider", "-q"] + (["-m", spec["marker"]] if spec["marker"] else [])
    cli_args += ["-k", spec["deselect"]] if spec.get("deselect") else []
    lines = ["[mutmut]", "source_paths = src/mlmkit/", "also_copy =\n    recipes/\n    .importlinter"]
    lines.append("only_mutate =\n" + "\n".join(f"    {pattern}" for pattern in spec["only_mutate"]))
    lines.append("pytest_add_cli_args_test_selection =\n" + "\n".join(f"    {path}" for path in spec["tests"]))
    lines.append("pytest_add_cli_args =\n" + "\n".join(f"    {arg}" for arg in cli_args))
    return "\n".join(lines) + "\n"


def refresh(workdir: Path, name: str, tests_at: str | None = None) -> None:
    """Copy the package, tests and recipes into ``workdir`` (results in ``mutants/`` are kept).

    With ``tests_at``, ``tests/`` comes from that git revision instead of the working tree.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    for item in COPIED:
        source, target = ROOT / item, workdir / item
        if target.is_dir():
            shutil.rmtree(target)
        if item == "tests" and tests_at:
            archive = subprocess.run(["git", "archive", tests_at, "tests"], cwd=ROOT, check=True,
                                     capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(workdir)], input=archive, check=True)
        elif source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, target)
    (workdir / "setup.cfg").write_text(setup_cfg(name))


def results(workdir: Path) -> dict[str, dict[str, int | None]]:
    """Per mutated module, mutant name -> mutmut exit code (``None``: not tested yet)."""
    out = {}
    for meta in sorted((workdir / "mutants" / "src").rglob("*.py.meta")):
        module = meta.relative_to(workdir / "mutants" / "src").as_posix()[: -len(".meta")]
        out[module] = json.loads(meta.read_text())["exit_code_by_key"]
    return out


def table(by_module: dict[str, dict[str, int | None]]) -> tuple[str, dict[str, dict[str, int]]]:
    """A Markdown table of killed / survived / not reached per module, and the same counts as a dict."""
    rows, counts, total = [], {}, Counter()
    header = "| module | mutants | killed | survived | not reached by the tests | not tested yet | score |"
    rows += [header, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]

    def row(label: str, c: Counter) -> str:
        score = f"{100 * c['killed'] / c['mutants']:.0f}%" if c["mutants"] else "-"
        return (f"| {label} | {c['mutants']} | {c['killed']} | {c['survived']} | {c['not reached']} | "
                f"{c['not tested']} | {score} |")

    for module, codes in by_module.items():
        c = Counter(mutants=len(codes))
        for code in codes.values():
            if code is None:
                c["not tested"] += 1
            elif code in KILLED:
                c["killed"] += 1
            elif code in SURVIVED:
                c["survived"] += 1
            elif code in NOT_REACHED:
                c["not reached"] += 1
            else:
                c["other"] += 1
        counts[module] = dict(c)
        total.update(c)
        rows.append(row(f"`{module}`", c))
    rows.append(row("**all**", total))
    return "\n".join(rows), counts


def survivors(by_module: dict[str, dict[str, int | None]], reached: bool = True) -> list[str]:
    """Names of the mutants that survived (and, with ``reached=False``, those no test reached)."""
    wanted = SURVIVED if reached else SURVIVED | NOT_REACHED
    return sorted(name for codes in by_module.values() for name, code in codes.items() if code in wanted)


def attempt(workdir: Path, name: str, tests: list[str]) -> int:
    """Run ``tests`` from the working tree with the mutant ``name`` switched on; 0 when they fail (killed)."""
    mutated = workdir / "mutants" / "src"
    if not mutated.is_dir():
        print(f"no mutants in {workdir}; run the set first", file=sys.stderr)
        return 2
    env = {**os.environ, **TEST_ENV, "MUTANT_UNDER_TEST": name, "PYTHONPATH": str(mutated)}
    code = subprocess.call([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                           cwd=ROOT, env=env)
    print(f"{name}: {'killed' if code == 1 else 'survived' if code == 0 else f'pytest exit code {code}'}")
    return 0 if code == 1 else 1


def sample_of(workdir: Path, by_module: dict[str, dict[str, int | None]], size: int, seed: int) -> list[str]:
    """A seeded uniform sample of ``size`` mutant names, remembered in the work folder."""
    path = workdir / f"sample-{size}-seed{seed}.txt"
    if path.is_file():
        return path.read_text().split()
    names = sorted(name for codes in by_module.values() for name in codes)
    chosen = sorted(random.Random(seed).sample(names, min(size, len(names))))
    path.write_text("\n".join(chosen) + "\n")
    return chosen


def subsample_of(chosen: list[str], size: int, seed: int) -> list[str]:
    """The first ``size`` names of ``chosen`` in a seeded random order: again a uniform sample of the set."""
    order = sorted(chosen)
    random.Random(seed + 1).shuffle(order)
    return sorted(order[:size])


def restrict(by_module: dict[str, dict[str, int | None]], names: list[str]) -> dict[str, dict[str, int | None]]:
    """Only the mutants in ``names``."""
    wanted = set(names)
    kept = {module: {n: c for n, c in codes.items() if n in wanted} for module, codes in by_module.items()}
    return {module: codes for module, codes in kept.items() if codes}


def score_interval(killed: int, tested: int) -> str:
    """The score on a sample, with its exact (Clopper-Pearson) 95% interval."""
    from scipy.stats import binomtest

    low, high = binomtest(killed, tested).proportion_ci(confidence_level=0.95, method="exact")
    return f"{100 * killed / tested:.1f}% (95% interval {100 * low:.1f}% to {100 * high:.1f}%)"


def run_mutmut(workdir: Path, names: list[str], max_children: int, quiet: bool = False) -> int:
    """``mutmut run`` in the work folder (all mutants without a result when ``names`` is empty)."""
    env = {**os.environ, **TEST_ENV}
    mutmut = Path(sys.executable).with_name("mutmut")
    output = subprocess.DEVNULL if quiet else None
    code = subprocess.call([str(mutmut), "run", "--max-children", str(max_children), *names], cwd=workdir, env=env,
                           stdout=output, stderr=output)
    if code != 0 and not quiet:
        print(f"mutmut exited with {code}", file=sys.stderr)
    return code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("set", choices=sorted(SETS))
    parser.add_argument("--only", nargs="+", default=[], help="mutant names or globs, e.g. 'mlmkit.masking.span.*'")
    parser.add_argument("--rerun-survivors", action="store_true",
                        help="test the surviving mutants (and those no test reached) again, with the current tests")
    parser.add_argument("--sample", type=int, default=0, metavar="N",
                        help="test a seeded random sample of N mutants and report the score with its interval")
    parser.add_argument("--seed", type=int, default=0, help="seed of --sample")
    parser.add_argument("--subsample", type=int, default=0, metavar="M",
                        help="with --sample N: only M of those N mutants, drawn at random (seed + 1), for a set whose "
                             "N mutants take too long")
    parser.add_argument("--tests-at", metavar="REV", default=None,
                        help="use the tests of this git revision (e.g. for a 'before' score); default: working tree")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--report", action="store_true", help="print the table of the last run only")
    parser.add_argument("--workdir", type=Path, default=None, help="default: .mutation/<set>")
    parser.add_argument("--try", dest="attempt", nargs="+", metavar=("NAME", "TEST"),
                        help="run the working tree's TESTs (pytest arguments) against the mutant NAME of the "
                             "last run; exit 0 when they kill it")
    parser.add_argument("--survivors", nargs="?", const="", metavar="MODULE",
                        help="list the surviving mutants of the last run (of the modules whose path contains MODULE)")
    args = parser.parse_args()
    workdir = (args.workdir or ROOT / ".mutation" / args.set).resolve()
    if args.survivors is not None:
        by_module = {module: codes for module, codes in results(workdir).items() if args.survivors in module}
        print("\n".join(survivors(by_module)))
        return 0
    if args.attempt:
        return attempt(workdir, args.attempt[0], args.attempt[1:])
    if not args.report:
        refresh(workdir, args.set, args.tests_at)
        if args.sample and not results(workdir):
            # generate the mutants to draw from: mutmut writes them, then stops on a filter matching none
            run_mutmut(workdir, ["mlmkit.no_such_module.*"], args.max_children, quiet=True)
            if not results(workdir):
                print("mutmut could not generate the mutants", file=sys.stderr)
                return 1
        current = results(workdir)
        chosen = sample_of(workdir, current, args.sample, args.seed) if args.sample else None
        if chosen and args.subsample:
            chosen = subsample_of(chosen, args.subsample, args.seed)
        pool = restrict(current, chosen) if chosen else current
        names = list(args.only) + (survivors(pool, reached=False) if args.rerun_survivors else [])
        if chosen and not args.rerun_survivors and not args.only:
            names = [name for codes in pool.values() for name, code in codes.items() if code is None]
        if (args.rerun_survivors or chosen) and not names:
            print("nothing to test")
        else:
            code = run_mutmut(workdir, names, args.max_children)
            if code != 0:
                return code
    by_module = results(workdir)
    if not by_module:
        print(f"no results in {workdir}; run without --report first", file=sys.stderr)
        return 2
    if args.sample:
        chosen = sample_of(workdir, by_module, args.sample, args.seed)
        by_module = restrict(by_module, subsample_of(chosen, args.subsample, args.seed) if args.subsample else chosen)
    text, counts = table(by_module)
    print(text)
    killed = sum(c.get("killed", 0) for c in counts.values())
    tested = sum(c["mutants"] - c.get("not tested", 0) for c in counts.values())
    if tested and args.sample:  # a uniform sample: the interval says how far the whole set's score may lie
        print(f"score of the {tested} tested mutants of the sample: {score_interval(killed, tested)}")
    elif tested:  # mutmut tests the quickest mutants first, so a partial run is no sample of the whole
        print(f"score of the {tested} tested mutants: {100 * killed / tested:.1f}%")
    name = f"scores-sample-{args.sample}-seed{args.seed}{f'-sub{args.subsample}' if args.subsample else ''}.json" \
        if args.sample else "scores.json"
    (workdir / name).write_text(json.dumps(counts, indent=2) + "\n")
    print(f"survivors: {len(survivors(by_module))} (list: --survivors; a diff: `mutmut show NAME` in {workdir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
