"""Moved to lm_probes/inputs.py (the shared inputs are data at the bottom of the house: the card
stage reads them too). Kept for one release so that tests importing the old path still run."""

from lm_probes.inputs import *  # noqa: F403
from lm_probes.inputs import QUESTION_FORMAT, article_inputs, format_prompt  # noqa: F401
