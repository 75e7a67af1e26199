"""What the CLI runs that spans the rooms below it (top floor, beside ``accord.cli``).

``flows`` (an ingest, then its tokenize), ``synth`` (text -> audio with a checkpoint),
``evaluation`` (the mini-eval ``accord train`` gives the trainer), ``doctor`` (what resolves
here). Nothing below the top floor imports these.
"""
