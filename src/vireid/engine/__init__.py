"""Training and evaluation: the stages (cmc, mmlm, sca), the pipeline that runs them in order and
resumes them, and what they share (run context, hooks, checkpoints, run folder, devices, DDP).

Layering: the engine imports data, models, clustering, losses, evaluation and viz; nothing below it
imports the engine, and the engine never imports the demo or the command line.
"""
