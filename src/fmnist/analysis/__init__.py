"""``fmnist report``: the study's figures and one self-contained HTML page for a training run.

``figures`` holds one pure plotting function per figure (arrays in, PNG out); ``report`` loads a
run, computes the arrays and writes the page.
"""
