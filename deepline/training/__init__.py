"""Training: the loop, its callbacks, checkpoints, optimizers and experiment assembly.

(Named ``training`` so that the package never shadows the public ``deepline.train()``.)
"""
