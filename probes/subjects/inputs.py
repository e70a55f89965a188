"""Moved to probes/inputs.py (the shared inputs are data at the bottom of the house: the card
stage reads them too). Kept for one release so that tests importing the old path still run."""

from probes.inputs import *  # noqa: F403
from probes.inputs import QUESTION_FORMAT, article_inputs, format_prompt  # noqa: F401
