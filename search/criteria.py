"""The two ways a best saver is chosen, by name: in a module that imports nothing, so the command
line's options can show them without loading the search."""

BUDGET = "budget"  # the largest saving within an accuracy drop
PAPER = "paper"  # the paper's "equal performance" match, smallest delta C
CRITERIA = (BUDGET, PAPER)
DEFAULT_CANDIDATES = 5  # three-model cascades: savers considered per stage (search.chains)
MAX_PROBABILITY = "max"  # a sample's confidence: its top-1 softmax probability (the paper's)
MARGIN = "margin"  # the top-1 probability minus the top-2
CONFIDENCES = (MAX_PROBABILITY, MARGIN)  # the signals one prediction chunk gives by itself
LEARNED = "learned"  # a rule trained on the saver's top-k output, scored out of fold
SIGNALS = (*CONFIDENCES, LEARNED)  # every signal an answer can be asked on
#: The learned signal's second array (held-out scores), stored beside it: never asked for.
LEARNED_HOLDOUT = "learned-ho"
