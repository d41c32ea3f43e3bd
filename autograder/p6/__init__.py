"""P6 on the grader's side: course texts, instance pools, the reference cache, plots.

Nothing here runs student code or loads the model in the grader's process: the model runs in
child processes (autograder/child/p6_harness.py); torch and transformers are imported only
while the reference cache is built (tokenizing texts) and never while a submission is graded.
"""
