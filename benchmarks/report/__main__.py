"""`python -m benchmarks.report`: writes docs/results.md, its plots and the method pages'
results files (see the package docstring)."""

from __future__ import annotations

import os
import sys

from absl import app, flags

from benchmarks.report.method_results import write_method_results
from benchmarks.report.page import COMMAND, build_page
from benchmarks.report.runs import load_results

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command's flags (once)."""
    if "results_dir" in FLAGS:
        return
    flags.DEFINE_string("results_dir", os.path.join("benchmarks", "results", "accuracy"),
                        "Folder holding one sub-folder of run JSONs per grid.")
    flags.DEFINE_string("output", os.path.join("docs", "results.md"), "The page to write.")
    flags.DEFINE_string("plots_dir", None, "Where the PNGs go (default: results/ beside "
                        "--output).")
    flags.DEFINE_string("machine", None, "Machine description (default: detected).")
    flags.DEFINE_string("method_pages", os.path.join("docs", "methods"),
                        "Folder of the hand-written method pages; each gets a generated "
                        "results file in --method_results that it links to ('' to write "
                        "none).")
    flags.DEFINE_string("method_results", None, "Where the method pages' generated results "
                        "files go (default: results/methods/ beside --output).")
    flags.DEFINE_bool("evaluate_students", True, "Evaluate saved students for per-class "
                      "accuracy when the run JSON lacks it (needs the dataset).")


def main(argv):
    del argv
    command = " ".join([COMMAND] + sys.argv[1:])
    report = build_page(FLAGS.results_dir, FLAGS.output, FLAGS.plots_dir, command=command,
                        machine=FLAGS.machine, evaluate_students=FLAGS.evaluate_students)
    print(f"Wrote {FLAGS.output}")
    if FLAGS.method_pages:
        results_dir = FLAGS.method_results or os.path.join(
            os.path.dirname(os.path.abspath(FLAGS.output)), "results", "methods")
        written, unlinked = write_method_results(
            load_results(FLAGS.results_dir), FLAGS.method_pages, results_dir, FLAGS.output)
        print(f"Wrote the measured results of {len(written)} method pages to {results_dir}")
        for page in unlinked:
            print(f"  warning: {page} does not link to its results file in {results_dir}")
    for claim, text in report.verdicts:
        print(f"  claim {claim}: {text}")
    for note in report.notes:
        print(f"  note: {note}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
