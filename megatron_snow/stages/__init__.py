"""The stage runner: every data step is run by ``run_step`` over 1 or N MPI ranks.

A step is one of two kinds: a *records step* (``Step``; ``RecordStep`` for one
record at a time), whose output is a records dataset (its directory), or an
*artefact step* (``ArtefactStep``), whose output is files beside it (a
tokenizer, a Megatron index). The runner tells them apart in one place and
knows nothing of any particular step.

A step says *what* to do with one unit of work; the runner owns everything else,
once, for every step:

- the unit plan (``step.units``, computed on rank 0 and shared) and round-robin
  rank assignment over ``megatron_snow.dist.Comm``;
- one output shard per unit (``part-NNNNN.jsonl.gz``, the same bytes whatever
  the number of ranks), set-aside records under ``dropped/`` with their reason,
  and a completion marker (``unit_marker``: ``_work/unit-NNNNN.json``) written last: a killed run
  re-run with the same command redoes only unfinished units (a marker holds a
  fingerprint of its unit, so a plan that follows the number of processes, as
  build-index's does, redoes the units that changed);
- a fingerprint (``step.json``) of the step's settings and of the *content* it
  depends on (the input dataset's manifest, which holds every shard's hash;
  model, tokenizer or benchmark files by hash): output of another fingerprint
  is refused in one line (``StaleOutputError``, exit 2); ``force=True``
  (``--force``) or a new directory is the way out;
- errors: a failure on any rank ends every rank with the same one line
  (``StepError``); bad input is the step's to count, not to raise;
- temp files of killed writes removed (``megatron_snow.atomic``);
- the funnel merged over units and checked (in = kept + dropped per reason),
  ``stats.json`` (numbers summed over units), ``ranks.json`` (each rank's
  rank, world size and units in the last run: the only file that depends on
  the number of ranks), and the manifest, written last;
- accounting across steps: records in must equal the input manifest's
  records, kept must equal what the shards hold, and every input shard must
  hold what its manifest entry says; otherwise the step fails loudly.

Layout of a step's output directory::

    OUT/part-NNNNN.jsonl.gz  manifest.json   kept records (a records.py dataset)
    OUT/dropped/...                          set-aside records, meta["dropped"] = {stage, reason, ...}
    OUT/funnel.json stats.json ranks.json step.json
    OUT/_work/                               unit markers and the step's own resume state
    (an artefact step: no part-*/dropped/ unless it sets records aside; manifest.json lists its outputs)

Writing a step (a step added in one file; ``tests/test_stages.py`` has this one)::

    from dataclasses import dataclass
    from megatron_snow.config import Config, setting
    from megatron_snow.stages import RecordStep, run_step

    @dataclass
    class UpperSettings(Config):
        min_chars: int = setting(10, help="shorter files are set aside as 'short'", range=">= 0")

    class Upper(RecordStep):
        name = "upper"

        def __init__(self, settings, input_dir):
            self.settings, self.input_dir = settings, input_dir

        def map(self, rec):
            if len(rec.content) < self.settings.min_chars:
                return None, "short", {}
            rec.content = rec.content.upper()
            return rec, None, {}

    funnel = run_step(Upper(UpperSettings(), "phase1/06_pii"), "out/upper")

A step over other units (files, row groups, hash buckets) subclasses ``Step``
and defines ``units(ctx)`` (a JSON-able list) and ``process(ctx, i, unit) ->
UnitResult(kept, dropped, funnel, stats)`` (a record it sets aside: counted as
seen, then ``set_aside(funnel, dropped, rec, reason, details)``, which counts it
in the funnel and adds it to ``dropped`` in one call); ``depends_on()`` names files whose
content the output depends on; ``prepare(ctx, units)`` runs on every rank
before the units, for collective work such as the all-to-all exchange of
dedup (do local work inside ``ctx.agree(fn)`` before a collective, so an
error on one rank stops every rank with one line instead of a hang);
``transforms = True`` when the kept output is not the kept input records
(then set ``UnitResult.represents``). ``workers = N`` runs ``process`` on N
forked processes inside each rank (biggest units first by ``weight(unit)``;
the markers are still written by the rank itself). ``input_records()`` says how
many records the inputs' manifests hold (default: ``input_dir``'s), which the
funnel's "in" must equal.

An artefact step subclasses ``ArtefactStep``, whose contract adds two methods:
``outputs()`` lists the files it writes outside its directory, and each unit
writes its part under ``ctx.work`` and returns ``UnitResult([], dropped, funnel, represents=n, part={...})`` (the
JSON-able ``part`` goes into the unit's marker); ``finalize(ctx, parts,
funnel)`` runs on rank 0 after every unit and merges the parts (in unit order)
into ``outputs()``, returning how many records they hold (checked against the
funnel's kept). The runner writes funnel, stats, ranks and, last, a
``manifest.json`` listing the outputs and their sizes: the step is complete
while they keep them (an output deleted since makes the next run finalize
again, from the parts if ``cleanup`` left them). Existing outputs without this
step's ``step.json`` are refused like any other stale output; ``--force``
removes them. ``tokenization/build_index.py`` and ``tokenization/train.py``
are the two examples (their directory is ``PREFIX.step/`` / ``X.step/``).

A command line for a step is one ``Command`` record in ``megatron_snow/commands.py``
(``--config``, ``key=value``, ``--force``, ``--help`` listing every setting with its
default and meaning); ``stages.cli.run_cli`` gives an unregistered step the same.
"""
from megatron_snow.stages.runner import (  # noqa: F401
    FUNNEL_FILE, RANKS_FILE, STEP_FILE, ArtefactStep, BadRecord, CodeRecord, Dropped, RecordError, RecordStep,
    StaleOutputError, Step, StepContext, StepError, UnitResult, content_hash, count_bad, fingerprint, is_complete,
    merge_stats, nbytes_of, run_step, set_aside, unit_marker,
)
